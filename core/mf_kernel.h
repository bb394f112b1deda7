/* mf_kernel.h: the SGD inner loop shared by the trainer (mf_train.c) and the
 * online step (mf.c). Internal to core/, not part of the API.
 *
 * The dot product keeps MF_LANES independent partial sums so that gcc can
 * vectorise it without -ffast-math (a plain float reduction may not be
 * reordered); the sums are folded in a fixed order, so a given binary always
 * produces the same bits. Called with a constant k (64) the loops are fully
 * unrolled. */
#ifndef UL_MF_KERNEL_H
#define UL_MF_KERNEL_H

#define MF_LANES 16 /* the folds below assume 16 */

static inline float mf_kernel_dot(const float *restrict a, const float *restrict b, int k) {
    float acc[MF_LANES] = {0};
    int j = 0;
    for (; j + MF_LANES <= k; j += MF_LANES)
        for (int l = 0; l < MF_LANES; l++)
            acc[l] += a[j + l] * b[j + l];
    float tail = 0.0f;
    for (; j < k; j++)
        tail += a[j] * b[j];
    /* Fold 16 -> 8 -> 4 -> 2 -> 1, written out: gcc leaves a loop over the
     * width as a scalar loop through the stack. */
    for (int l = 0; l < 8; l++)
        acc[l] += acc[l + 8];
    for (int l = 0; l < 4; l++)
        acc[l] += acc[l + 4];
    for (int l = 0; l < 2; l++)
        acc[l] += acc[l + 2];
    return (acc[0] + acc[1]) + tail;
}

/* p += lr (err q - reg p), q += lr (err p - reg q), both from the old values. */
static inline void mf_kernel_update(float *restrict p, float *restrict q, int k, float err,
                                    float lr, float reg) {
    const float a = lr * err;
    const float b = 1.0f - lr * reg;
    for (int j = 0; j < k; j++) {
        const float pj = p[j];
        const float qj = q[j];
        p[j] = b * pj + a * qj;
        q[j] = b * qj + a * pj;
    }
}

/* One SGD step on a rating; returns the error before the step. */
static inline float mf_kernel_step(float *restrict p, float *restrict q, float *restrict bu,
                                   float *restrict bi, int k, float mu, float r, float lr,
                                   float reg, float reg_bias) {
    const float err = r - (mu + *bu + *bi + mf_kernel_dot(p, q, k));
    *bu += lr * (err - reg_bias * *bu);
    *bi += lr * (err - reg_bias * *bi);
    mf_kernel_update(p, q, k, err, lr, reg);
    return err;
}

#endif
