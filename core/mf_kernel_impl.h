/* mf_kernel_impl.h: the SGD arithmetic, written once and compiled once per
 * instruction set (see mf_kernel.h). Include it only from a
 * mf_kernel_<name>.c file, after defining
 *   MF_KERNEL_NAME(x)  the variant's name for x, e.g. x##_avx2
 * and, for the AVX variants, the vector macros of the k = 64 step below
 * (MF_V the vector type, MF_VN its floats, MF_VLOAD, MF_VSTORE, MF_VMUL,
 * MF_VFMADD, MF_VSET1, and MF_VTO8 which adds its 16-lane accumulators into
 * one 8-lane __m256 as kernel_fold16's first step does).
 *
 * The dot product keeps MF_LANES independent partial sums so that gcc can
 * vectorise it without -ffast-math (a plain float reduction may not be
 * reordered), then folds them in a fixed order, written out: a loop over the
 * width would stay a scalar loop through the stack. Called with a constant
 * k (64, the default) every loop unrolls into straight-line vector code. */
#include "mf_kernel.h"

#define MF_LANES 16    /* the fold in kernel_dot assumes 16 */
#define MF_SSE_RUN 256 /* ratings whose squared errors kernel_block sums in float */

/* Every helper below is forced inline: the block loop must come out as one
 * straight-line body per rating (left to itself gcc outlines the k = 64
 * step and calls it, or splits it). */
#define MF_INLINE __attribute__((always_inline)) static inline

/* a * b + c: one fused multiply-add where the variant is built with
 * -ffp-contract=fast (gcc contracts after vectorising; an explicit fmaf
 * would keep the loops scalar), a multiply and an add in the baseline. */
#define MF_MADD(a, b, c) ((a) * (b) + (c))

#ifdef MF_V
#include <immintrin.h>

/* 8 -> 4 -> 2 -> 1, kernel_fold16's order, in AVX shuffles. */
MF_INLINE float kernel_fold8_avx(__m256 v) {
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_shuffle_ps(x, x, 1));
    return _mm_cvtss_f32(x);
}

#define MF_VA (MF_LANES / MF_VN) /* vectors holding kernel_dot's 16 sums */
#define MF_VC (64 / MF_VN)       /* vectors in a k = 64 row */

/* The fold of the 16 partial sums, 16 -> 8 -> 4 -> 2 -> 1. */
MF_INLINE float kernel_fold16(float *acc) {
    MF_V v[MF_VA];
    for (int a = 0; a < MF_VA; a++)
        v[a] = MF_VLOAD(acc + MF_VN * a);
    return kernel_fold8_avx(MF_VTO8(v));
}
#else
/* The fold of the 16 partial sums, 16 -> 8 -> 4 -> 2 -> 1. */
MF_INLINE float kernel_fold16(float *acc) {
    for (int l = 0; l < 8; l++)
        acc[l] += acc[l + 8];
    for (int l = 0; l < 4; l++)
        acc[l] += acc[l + 4];
    for (int l = 0; l < 2; l++)
        acc[l] += acc[l + 2];
    return acc[0] + acc[1];
}
#endif

MF_INLINE float kernel_dot(const float *restrict a, const float *restrict b, int k) {
    float acc[MF_LANES] = {0};
    int j = 0;
    if (k >= MF_LANES) {
        for (int l = 0; l < MF_LANES; l++)
            acc[l] = a[l] * b[l];
        j = MF_LANES;
    }
    for (; j + MF_LANES <= k; j += MF_LANES)
        for (int l = 0; l < MF_LANES; l++)
            acc[l] = MF_MADD(a[j + l], b[j + l], acc[l]);
    float tail = 0.0f;
    for (; j < k; j++)
        tail = MF_MADD(a[j], b[j], tail);
    return kernel_fold16(acc) + tail;
}

/* p += a_u q - c_u p, q += a_i p - c_i q, both from the old values, where
 * a = lr err and c = lr reg for each side. */
MF_INLINE void kernel_update(float *restrict p, float *restrict q, int k, float err, float lr_u,
                             float lr_i, float reg) {
    const float au = lr_u * err, bu = 1.0f - lr_u * reg;
    const float ai = lr_i * err, bi = 1.0f - lr_i * reg;
    for (int j = 0; j < k; j++) {
        const float pj = p[j];
        const float qj = q[j];
        p[j] = MF_MADD(au, qj, bu * pj);
        q[j] = MF_MADD(ai, pj, bi * qj);
    }
}

MF_INLINE float kernel_step(float *restrict p, float *restrict q, float *restrict bu,
                            float *restrict bi, int k, float mu, float r, float lr_u, float lr_i,
                            float reg, float reg_bias) {
    const float err = r - (mu + *bu + *bi + kernel_dot(p, q, k));
    /* b += lr (err - reg_bias b), as b (1 - lr reg_bias) + lr err. */
    *bu = MF_MADD(*bu, 1.0f - lr_u * reg_bias, lr_u * err);
    *bi = MF_MADD(*bi, 1.0f - lr_i * reg_bias, lr_i * err);
    kernel_update(p, q, k, err, lr_u, lr_i, reg);
    return err;
}

#ifdef MF_V
/* kernel_step for k = 64 in vector intrinsics, the same operations in the
 * same order: p stays in registers from the dot to the update (gcc reloads
 * it and spills otherwise), q is read from memory where it is used. */
MF_INLINE float kernel_step64(float *restrict p, float *restrict q, float *restrict bu,
                              float *restrict bi, float mu, float r, float lr_u, float lr_i,
                              float reg, float reg_bias) {
    MF_V pv[MF_VC], acc[MF_VA];
    for (int c = 0; c < MF_VC; c++)
        pv[c] = MF_VLOAD(p + MF_VN * c);
    for (int a = 0; a < MF_VA; a++)
        acc[a] = MF_VMUL(pv[a], MF_VLOAD(q + MF_VN * a));
    for (int c = MF_VA; c < MF_VC; c++)
        acc[c % MF_VA] = MF_VFMADD(pv[c], MF_VLOAD(q + MF_VN * c), acc[c % MF_VA]);
    const float err = r - (mu + *bu + *bi + kernel_fold8_avx(MF_VTO8(acc)));
    *bu = MF_MADD(*bu, 1.0f - lr_u * reg_bias, lr_u * err);
    *bi = MF_MADD(*bi, 1.0f - lr_i * reg_bias, lr_i * err);
    const MF_V au = MF_VSET1(lr_u * err), bu_ = MF_VSET1(1.0f - lr_u * reg);
    const MF_V ai = MF_VSET1(lr_i * err), bi_ = MF_VSET1(1.0f - lr_i * reg);
    for (int c = 0; c < MF_VC; c++) {
        const MF_V qv = MF_VLOAD(q + MF_VN * c);
        MF_VSTORE(p + MF_VN * c, MF_VFMADD(au, qv, MF_VMUL(bu_, pv[c])));
        MF_VSTORE(q + MF_VN * c, MF_VFMADD(ai, pv[c], MF_VMUL(bi_, qv)));
    }
    return err;
}
#endif

/* kernel_step, with the vector k = 64 step where the variant has one. */
MF_INLINE float kernel_step_any(float *restrict p, float *restrict q, float *restrict bu,
                                float *restrict bi, int k, float mu, float r, float lr_u,
                                float lr_i, float reg, float reg_bias) {
#ifdef MF_V
    if (k == 64)
        return kernel_step64(p, q, bu, bi, mu, r, lr_u, lr_i, reg, reg_bias);
#endif
    return kernel_step(p, q, bu, bi, k, mu, r, lr_u, lr_i, reg, reg_bias);
}

/* Touch the rows of a coming rating: the first cache line of every 128
 * bytes (the L2's adjacent-line prefetcher brings the other). Written out
 * for k = 64: as a loop gcc computes each address afresh. */
MF_INLINE void kernel_prefetch(const mf_entry *e, const float *P, const float *Q, int k) {
    const float *pp = P + (size_t)e->u * (size_t)k;
    const float *pq = Q + (size_t)e->i * (size_t)k;
    if (k == 64) {
        __builtin_prefetch(pp, 1);
        __builtin_prefetch(pp + 32, 1);
        __builtin_prefetch(pq, 1);
        __builtin_prefetch(pq + 32, 1);
        return;
    }
    for (int l = 0; l < k; l += 32) {
        __builtin_prefetch(pp + l, 1);
        __builtin_prefetch(pq + l, 1);
    }
}

/* Written once, instantiated below for k = 64 (constant: fully unrolled,
 * rows 64-byte aligned) and for any other k. e[n .. n + MF_PREFETCH) must
 * be readable entries with ids inside the model (mf_block_job). */
MF_INLINE double kernel_block(const mf_entry *restrict e, size_t n, float *restrict P,
                              float *restrict Q, float *restrict bu, float *restrict bi, int k,
                              float mu, float lr, float reg, float reg_bias) {
    double sse = 0.0;
    for (size_t at = 0; at < n; at += MF_SSE_RUN) {
        /* Squared errors summed in float over runs of MF_SSE_RUN ratings
         * (relative error below 2e-5), in double across runs: one
         * conversion per run instead of one per rating. */
        float run = 0.0f;
        const mf_entry *end = e + (n - at < MF_SSE_RUN ? n : at + MF_SSE_RUN);
        for (const mf_entry *x = e + at; x < end; x++) {
            kernel_prefetch(x + MF_PREFETCH, P, Q, k);
            float *p = P + (size_t)x->u * (size_t)k;
            float *q = Q + (size_t)x->i * (size_t)k;
            float err =
                kernel_step_any(p, q, bu + x->u, bi + x->i, k, mu, x->r, lr, lr, reg, reg_bias);
            run = MF_MADD(err, err, run);
        }
        sse += run;
    }
    return sse;
}

float MF_KERNEL_NAME(mf_dot)(const float *p, const float *q, int k) {
    return k == 64 ? kernel_dot(p, q, 64) : kernel_dot(p, q, k);
}

/* The k = 64 block loop in a function of its own, so that its registers
 * are allocated for it alone. */
__attribute__((noinline)) static double kernel_block64(const mf_block_job *j) {
    return kernel_block(j->e, j->n, __builtin_assume_aligned(j->P, 64),
                        __builtin_assume_aligned(j->Q, 64), j->bu, j->bi, 64, j->mu, j->lr, j->reg,
                        j->reg_bias);
}

double MF_KERNEL_NAME(mf_sgd_block)(const mf_block_job *j) {
    if (j->k == 64)
        return kernel_block64(j);
    return kernel_block(j->e, j->n, j->P, j->Q, j->bu, j->bi, j->k, j->mu, j->lr, j->reg,
                        j->reg_bias);
}

float MF_KERNEL_NAME(mf_sgd_step)(float *p, float *q, float *bu, float *bi, int k, float mu,
                                  float r, float lr_u, float lr_i, float reg, float reg_bias) {
    if (k == 64)
        return kernel_step_any(p, q, bu, bi, 64, mu, r, lr_u, lr_i, reg, reg_bias);
    return kernel_step(p, q, bu, bi, k, mu, r, lr_u, lr_i, reg, reg_bias);
}
