/* mf_kernel_avx512.c: the SGD kernels for AVX-512F (Skylake-SP, Ice Lake,
 * Zen 4 and later). Built with -mavx512f -mfma -ffp-contract=fast and
 * 512-bit vectors preferred (CMakeLists.txt); only called after
 * mf_kernel.c has checked that the CPU and the OS support AVX-512F. */
#if defined(__x86_64__)
#include <immintrin.h>
#include <math.h>

#include "mf_kernel.h"

/* The 16 -> 8 -> 4 -> 2 -> 1 fold of a 16-lane sum. */
static inline float fold_avx512(__m512 z) {
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(z), 1));
    __m256 v = _mm256_add_ps(_mm512_castps512_ps256(z), hi);
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_shuffle_ps(x, x, 1));
    return _mm_cvtss_f32(x);
}

static inline float fold16_avx512(float *acc) {
    return fold_avx512(_mm512_loadu_ps(acc));
}

/* kernel_step for k = 64: p stays in four registers from the dot to the
 * update, q is read from memory where it is used. */
static inline float step64_avx512(float *restrict p, float *restrict q, float *restrict bu,
                                  float *restrict bi, float mu, float r, float lr_u, float lr_i,
                                  float reg, float reg_bias) {
    __m512 pv[4];
    for (int c = 0; c < 4; c++)
        pv[c] = _mm512_loadu_ps(p + 16 * c);
    __m512 acc = _mm512_mul_ps(pv[0], _mm512_loadu_ps(q));
    for (int c = 1; c < 4; c++)
        acc = _mm512_fmadd_ps(pv[c], _mm512_loadu_ps(q + 16 * c), acc);
    const float err = r - (mu + *bu + *bi + fold_avx512(acc));
    *bu = fmaf(*bu, 1.0f - lr_u * reg_bias, lr_u * err);
    *bi = fmaf(*bi, 1.0f - lr_i * reg_bias, lr_i * err);
    const __m512 au = _mm512_set1_ps(lr_u * err), bu_ = _mm512_set1_ps(1.0f - lr_u * reg);
    const __m512 ai = _mm512_set1_ps(lr_i * err), bi_ = _mm512_set1_ps(1.0f - lr_i * reg);
    for (int c = 0; c < 4; c++) {
        const __m512 qv = _mm512_loadu_ps(q + 16 * c);
        _mm512_storeu_ps(p + 16 * c, _mm512_fmadd_ps(au, qv, _mm512_mul_ps(bu_, pv[c])));
        _mm512_storeu_ps(q + 16 * c, _mm512_fmadd_ps(ai, pv[c], _mm512_mul_ps(bi_, qv)));
    }
    return err;
}

#define MF_KERNEL_NAME(x) x##_avx512
#define MF_KERNEL_FOLD16 fold16_avx512
#define MF_KERNEL_STEP64 step64_avx512
#include "mf_kernel_impl.h"
#endif
