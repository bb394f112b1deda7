/* mf_kernel_avx2.c: the SGD kernels for AVX2 with FMA (Haswell, Zen and
 * later). Built with -mavx2 -mfma -ffp-contract=fast (CMakeLists.txt); only
 * called after mf_kernel.c has checked that the CPU has both. */
#if defined(__x86_64__)
#include <immintrin.h>

/* kernel_dot's 16 sums are two vectors (lanes 0-7, 8-15): add them. */
static inline __m256 to8_avx2(const __m256 *acc) {
    return _mm256_add_ps(acc[0], acc[1]);
}

#define MF_KERNEL_NAME(x) x##_avx2
#define MF_V __m256
#define MF_VN 8
#define MF_VLOAD _mm256_loadu_ps
#define MF_VSTORE _mm256_storeu_ps
#define MF_VMUL _mm256_mul_ps
#define MF_VFMADD _mm256_fmadd_ps
#define MF_VSET1 _mm256_set1_ps
#define MF_VTO8 to8_avx2
#include "mf_kernel_impl.h"
#endif
