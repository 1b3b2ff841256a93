/* The kernels compiled for the avx512 target (flags in setup.py). */
#define LSE_TARGET avx512
#include "module.c"
