/* mf_kernel.c: the table of SGD kernel variants and the run-time choice
 * among them (see mf_kernel.h).
 *
 * The choice asks the CPU on every call (__builtin_cpu_supports reads what
 * libgcc's start-up code learnt from cpuid and xgetbv, including whether the
 * OS saves the AVX / AVX-512 registers), so there is no state of our own. */
#include "mf_kernel.h"

#include <string.h>

#include "ul_err.h"

/* Indexed by mf_kernel_id. */
static const char *const kernel_names[MF_KERNEL_COUNT] = {"auto", "base", "avx2", "avx512"};

/* In order of preference, best last. */
static const mf_kernel kernels[] = {
    {MF_KERNEL_BASE, mf_dot_base, mf_sgd_block_base, mf_sgd_step_base},
#if defined(__x86_64__)
    {MF_KERNEL_AVX2, mf_dot_avx2, mf_sgd_block_avx2, mf_sgd_step_avx2},
    {MF_KERNEL_AVX512, mf_dot_avx512, mf_sgd_block_avx512, mf_sgd_step_avx512},
#endif
};

#define N_KERNELS (sizeof(kernels) / sizeof(kernels[0]))

static int cpu_runs(mf_kernel_id id) {
    switch (id) {
    case MF_KERNEL_BASE:
        return 1;
#if defined(__x86_64__)
    case MF_KERNEL_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case MF_KERNEL_AVX512:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
#endif
    default:
        return 0;
    }
}

const mf_kernel *mf_kernel_get(mf_kernel_id id) {
    const mf_kernel *best = NULL;
    for (size_t x = 0; x < N_KERNELS; x++) {
        if (!cpu_runs(kernels[x].id))
            continue;
        if (kernels[x].id == id)
            return &kernels[x];
        if (id == MF_KERNEL_AUTO)
            best = &kernels[x];
    }
    return best;
}

const char *mf_kernel_name(mf_kernel_id id) {
    return id >= 0 && id < MF_KERNEL_COUNT ? kernel_names[id] : "?";
}

int mf_kernel_parse(const char *name, mf_kernel_id *id) {
    for (int x = 0; x < MF_KERNEL_COUNT; x++)
        if (name != NULL && strcmp(name, kernel_names[x]) == 0) {
            *id = (mf_kernel_id)x;
            return UL_OK;
        }
    return UL_ERR_ARG;
}

int mf_kernel_available(mf_kernel_id id) {
    return mf_kernel_get(id) != NULL;
}
