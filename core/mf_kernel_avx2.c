/* mf_kernel_avx2.c: the SGD kernels for AVX2 with FMA (Haswell, Zen and
 * later). Built with -mavx2 -mfma -ffp-contract=fast (CMakeLists.txt); only
 * called after mf_kernel.c has checked that the CPU has both. */
#if defined(__x86_64__)
#include <immintrin.h>
#include <math.h>

#include "mf_kernel.h"

/* The 16 -> 8 -> 4 -> 2 -> 1 fold of two 8-lane sums (lanes 0-7, 8-15). */
static inline float fold_avx2(__m256 lo, __m256 hi) {
    __m256 v = _mm256_add_ps(lo, hi);
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_shuffle_ps(x, x, 1));
    return _mm_cvtss_f32(x);
}

static inline float fold16_avx2(float *acc) {
    return fold_avx2(_mm256_loadu_ps(acc), _mm256_loadu_ps(acc + 8));
}

/* kernel_step for k = 64: p stays in eight registers from the dot to the
 * update, q is read from memory where it is used. */
static inline float step64_avx2(float *restrict p, float *restrict q, float *restrict bu,
                                float *restrict bi, float mu, float r, float lr_u, float lr_i,
                                float reg, float reg_bias) {
    __m256 pv[8];
    for (int c = 0; c < 8; c++)
        pv[c] = _mm256_loadu_ps(p + 8 * c);
    __m256 lo = _mm256_mul_ps(pv[0], _mm256_loadu_ps(q));
    __m256 hi = _mm256_mul_ps(pv[1], _mm256_loadu_ps(q + 8));
    for (int c = 2; c < 8; c += 2) {
        lo = _mm256_fmadd_ps(pv[c], _mm256_loadu_ps(q + 8 * c), lo);
        hi = _mm256_fmadd_ps(pv[c + 1], _mm256_loadu_ps(q + 8 * c + 8), hi);
    }
    const float err = r - (mu + *bu + *bi + fold_avx2(lo, hi));
    *bu = fmaf(*bu, 1.0f - lr_u * reg_bias, lr_u * err);
    *bi = fmaf(*bi, 1.0f - lr_i * reg_bias, lr_i * err);
    const __m256 au = _mm256_set1_ps(lr_u * err), bu_ = _mm256_set1_ps(1.0f - lr_u * reg);
    const __m256 ai = _mm256_set1_ps(lr_i * err), bi_ = _mm256_set1_ps(1.0f - lr_i * reg);
    for (int c = 0; c < 8; c++) {
        const __m256 qv = _mm256_loadu_ps(q + 8 * c);
        _mm256_storeu_ps(p + 8 * c, _mm256_fmadd_ps(au, qv, _mm256_mul_ps(bu_, pv[c])));
        _mm256_storeu_ps(q + 8 * c, _mm256_fmadd_ps(ai, pv[c], _mm256_mul_ps(bi_, qv)));
    }
    return err;
}

#define MF_KERNEL_NAME(x) x##_avx2
#define MF_KERNEL_FOLD16 fold16_avx2
#define MF_KERNEL_STEP64 step64_avx2
#include "mf_kernel_impl.h"
#endif
