/* The kernels compiled for the baseline target (flags in setup.py). */
#define LSE_TARGET baseline
#include "module.c"
