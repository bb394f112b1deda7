/* mf_kernel.h: the SGD inner loops, one variant per instruction set, picked
 * at run time. Internal to core/ (mf.c, mf_train.c), not part of the API.
 *
 * DESIGN. The arithmetic is written once, in portable C, in
 * mf_kernel_impl.h; mf_kernel_base.c, mf_kernel_avx2.c and mf_kernel_avx512.c
 * each include it and are compiled with their own -m flags (CMakeLists.txt),
 * so gcc vectorises the same source for SSE2 (baseline x86-64: every x86-64
 * CPU runs it), AVX2+FMA and AVX-512F. The FMA variants fuse the multiply-
 * adds explicitly (fmaf), the baseline does not, so the variants round
 * differently; each is deterministic, and within one training every thread
 * runs the same variant, so the model does not depend on the thread count.
 * mf_kernel.c holds the table and asks the CPU (cpuid, through the
 * compiler's __builtin_cpu_supports) which variants it can run. */
#ifndef UL_MF_KERNEL_H
#define UL_MF_KERNEL_H

#include <stddef.h>
#include <stdint.h>

#include "mf.h"

/* One training rating in the trainer's permuted indices (12 bytes). */
typedef struct mf_entry {
    int32_t u, i;
    float r;
} mf_entry;

/* One block of SGD work: the ratings e[0..n) in order, on rows of P, Q and
 * the biases (indexed by e[].u, e[].i). The kernel prefetches the rows of
 * the rating MF_PREFETCH places ahead without a bounds check, so e[n ..
 * n + MF_PREFETCH) must be readable entries with ids inside the model (the
 * next block's, or padding). P and Q are 64-byte aligned (mf_model_new). */
#define MF_PREFETCH 2
typedef struct mf_block_job {
    const mf_entry *e;
    size_t n;
    float *P, *Q, *bu, *bi;
    int k;
    float mu, lr, reg, reg_bias;
} mf_block_job;

typedef struct mf_kernel {
    mf_kernel_id id;
    /* p . q over k floats. */
    float (*dot)(const float *p, const float *q, int k);
    /* SGD over a block; returns the sum of squared errors before each
     * update. */
    double (*sgd_block)(const mf_block_job *job);
    /* One SGD step (the update of mf_sgd_step), with separate rates for the
     * user side (bias and p) and the item side; returns the error before
     * the step. */
    float (*sgd_step)(float *p, float *q, float *bu, float *bi, int k, float mu, float r,
                      float lr_u, float lr_i, float reg, float reg_bias);
} mf_kernel;

/* The variant `id` (MF_KERNEL_AUTO: the fastest this CPU runs), or NULL
 * when this build or this CPU lacks it. The table is static: never freed. */
const mf_kernel *mf_kernel_get(mf_kernel_id id);

/* The entry points of each variant (defined in mf_kernel_<name>.c). */
float mf_dot_base(const float *p, const float *q, int k);
double mf_sgd_block_base(const mf_block_job *job);
float mf_sgd_step_base(float *p, float *q, float *bu, float *bi, int k, float mu, float r,
                       float lr_u, float lr_i, float reg, float reg_bias);
#if defined(__x86_64__)
float mf_dot_avx2(const float *p, const float *q, int k);
double mf_sgd_block_avx2(const mf_block_job *job);
float mf_sgd_step_avx2(float *p, float *q, float *bu, float *bi, int k, float mu, float r,
                       float lr_u, float lr_i, float reg, float reg_bias);
float mf_dot_avx512(const float *p, const float *q, int k);
double mf_sgd_block_avx512(const mf_block_job *job);
float mf_sgd_step_avx512(float *p, float *q, float *bu, float *bi, int k, float mu, float r,
                         float lr_u, float lr_i, float reg, float reg_bias);
#endif

#endif
