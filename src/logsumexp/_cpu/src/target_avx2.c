/* The kernels compiled for the avx2 target (flags in setup.py). */
#define LSE_TARGET avx2
#include "module.c"
