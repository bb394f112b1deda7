/* mf_kernel_avx512.c: the SGD kernels for AVX-512F (Skylake-SP, Ice Lake,
 * Zen 4 and later). Built with -mavx512f -mfma -ffp-contract=fast and
 * 512-bit vectors preferred (CMakeLists.txt); only called after
 * mf_kernel.c has checked that the CPU and the OS support AVX-512F. */
#if defined(__x86_64__)
#include <immintrin.h>

/* kernel_dot's 16 sums are one vector: add its halves (lanes 0-7, 8-15). */
static inline __m256 to8_avx512(const __m512 *acc) {
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[0]), 1));
    return _mm256_add_ps(_mm512_castps512_ps256(acc[0]), hi);
}

#define MF_KERNEL_NAME(x) x##_avx512
#define MF_V __m512
#define MF_VN 16
#define MF_VLOAD _mm512_loadu_ps
#define MF_VSTORE _mm512_storeu_ps
#define MF_VMUL _mm512_mul_ps
#define MF_VFMADD _mm512_fmadd_ps
#define MF_VSET1 _mm512_set1_ps
#define MF_VTO8 to8_avx512
#include "mf_kernel_impl.h"
#endif
