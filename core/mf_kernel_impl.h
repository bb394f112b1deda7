/* mf_kernel_impl.h: the SGD arithmetic, written once and compiled once per
 * instruction set (see mf_kernel.h). Include it only from a
 * mf_kernel_<name>.c file, after defining
 *   MF_KERNEL_NAME(x)  the variant's name for x, e.g. x##_avx2
 * and optionally MF_KERNEL_FOLD16 (kernel_fold16 in vector instructions) and
 * MF_KERNEL_STEP64 (kernel_step for k = 64 in intrinsics: gcc reloads p
 * between the dot and the update and spills; the variant keeps it in
 * registers). Both must do the same operations in the same order.
 *
 * The dot product keeps MF_LANES independent partial sums so that gcc can
 * vectorise it without -ffast-math (a plain float reduction may not be
 * reordered), then folds them in a fixed order, written out: a loop over the
 * width would stay a scalar loop through the stack. Called with a constant
 * k (64, the default) every loop unrolls into straight-line vector code. */
#include "mf_kernel.h"

#define MF_LANES 16 /* the fold in kernel_dot assumes 16 */

/* a * b + c: one fused multiply-add where the variant is built with
 * -ffp-contract=fast (gcc contracts after vectorising; an explicit fmaf
 * would keep the loops scalar), a multiply and an add in the baseline. */
#define MF_MADD(a, b, c) ((a) * (b) + (c))

/* The fold of the 16 partial sums, 16 -> 8 -> 4 -> 2 -> 1; a variant may
 * supply the same fold in vector instructions (MF_KERNEL_FOLD16). */
#ifdef MF_KERNEL_FOLD16
#define kernel_fold16 MF_KERNEL_FOLD16
#else
static inline float kernel_fold16(float *acc) {
    for (int l = 0; l < 8; l++)
        acc[l] += acc[l + 8];
    for (int l = 0; l < 4; l++)
        acc[l] += acc[l + 4];
    for (int l = 0; l < 2; l++)
        acc[l] += acc[l + 2];
    return acc[0] + acc[1];
}
#endif

static inline float kernel_dot(const float *restrict a, const float *restrict b, int k) {
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
static inline void kernel_update(float *restrict p, float *restrict q, int k, float err, float lr_u,
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

static inline float kernel_step(float *restrict p, float *restrict q, float *restrict bu,
                                float *restrict bi, int k, float mu, float r, float lr_u,
                                float lr_i, float reg, float reg_bias) {
    const float err = r - (mu + *bu + *bi + kernel_dot(p, q, k));
    /* b += lr (err - reg_bias b), as b (1 - lr reg_bias) + lr err. */
    *bu = MF_MADD(*bu, 1.0f - lr_u * reg_bias, lr_u * err);
    *bi = MF_MADD(*bi, 1.0f - lr_i * reg_bias, lr_i * err);
    kernel_update(p, q, k, err, lr_u, lr_i, reg);
    return err;
}

/* kernel_step, with the variant's own k = 64 step when it has one. */
static inline float kernel_step_any(float *restrict p, float *restrict q, float *restrict bu,
                                    float *restrict bi, int k, float mu, float r, float lr_u,
                                    float lr_i, float reg, float reg_bias) {
#ifdef MF_KERNEL_STEP64
    if (k == 64)
        return MF_KERNEL_STEP64(p, q, bu, bi, mu, r, lr_u, lr_i, reg, reg_bias);
#endif
    return kernel_step(p, q, bu, bi, k, mu, r, lr_u, lr_i, reg, reg_bias);
}

/* Touch the rows of a coming rating: the first cache line of every 128
 * bytes (the L2's adjacent-line prefetcher brings the other). Written out
 * for k = 64: as a loop gcc computes each address afresh. */
static inline void kernel_prefetch(const mf_entry *e, const float *P, const float *Q, int k) {
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
static inline double kernel_block(const mf_entry *restrict e, size_t n, float *restrict P,
                                  float *restrict Q, float *restrict bu, float *restrict bi, int k,
                                  float mu, float lr, float reg, float reg_bias) {
    double sse = 0.0;
    for (const mf_entry *x = e, *end = e + n; x < end; x++) {
        kernel_prefetch(x + MF_PREFETCH, P, Q, k);
        float *p = P + (size_t)x->u * (size_t)k;
        float *q = Q + (size_t)x->i * (size_t)k;
        float err = kernel_step_any(p, q, bu + x->u, bi + x->i, k, mu, x->r, lr, lr, reg, reg_bias);
        sse += (double)err * err;
    }
    return sse;
}

float MF_KERNEL_NAME(mf_dot)(const float *p, const float *q, int k) {
    return k == 64 ? kernel_dot(p, q, 64) : kernel_dot(p, q, k);
}

double MF_KERNEL_NAME(mf_sgd_block)(const mf_block_job *j) {
    if (j->k == 64)
        return kernel_block(j->e, j->n, __builtin_assume_aligned(j->P, 64),
                            __builtin_assume_aligned(j->Q, 64), j->bu, j->bi, 64, j->mu, j->lr,
                            j->reg, j->reg_bias);
    return kernel_block(j->e, j->n, j->P, j->Q, j->bu, j->bi, j->k, j->mu, j->lr, j->reg,
                        j->reg_bias);
}

float MF_KERNEL_NAME(mf_sgd_step)(float *p, float *q, float *bu, float *bi, int k, float mu,
                                  float r, float lr_u, float lr_i, float reg, float reg_bias) {
    if (k == 64)
        return kernel_step_any(p, q, bu, bi, 64, mu, r, lr_u, lr_i, reg, reg_bias);
    return kernel_step(p, q, bu, bi, k, mu, r, lr_u, lr_i, reg, reg_bias);
}
