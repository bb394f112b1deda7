/* mf_kernel_base.c: the SGD kernels for baseline x86-64 (SSE2, no FMA), and
 * for any other CPU: portable C, built with the project's flags only. Also
 * the dot product behind every prediction, so predictions of a given model
 * are the same on every x86-64 CPU. */
#define MF_KERNEL_NAME(x) x##_base
#include "mf_kernel_impl.h"
