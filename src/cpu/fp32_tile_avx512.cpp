// The AVX-512 register tile of the float32 products (cpu/panel_gemm.hpp): 6
// rows × 32 columns (two B panels) of C in 12 zmm accumulators. Each
// element is the same FMA chain over k as in the AVX2 tile (gemm_kernel.hpp),
// so the two give the same bits; the wider registers halve the instructions
// per FMA, and on processors with two 512-bit FMA units double the rate.
// Compiled for AVX-512 by a target attribute on this file's own functions
// only, and called only where the processor has AVX-512.
#include <cstdint>
#include <cstdlib>

#include "cpu/kernel_path.hpp"
#include "cpu/panel_gemm.hpp"

#if VARPS_CPU_AVX2
#include <immintrin.h>

// The instructions these functions may use: a function attribute, which GCC
// and Clang both honour (Clang ignores GCC's target pragma).
#define VARPS_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))

namespace varps::cpu {
namespace {

template <int R>
VARPS_TARGET_AVX512 void tile(const float* a, const float* b0, const float* b1, int64_t ldb, int64_t kc, float* c, int64_t ldc,
          bool resume) {
  __m512 lo[R], hi[R];
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
    lo[r] = resume ? _mm512_loadu_ps(c + r * ldc) : _mm512_setzero_ps();
    hi[r] = resume ? _mm512_loadu_ps(c + r * ldc + 16) : _mm512_setzero_ps();
  }
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 w0 = _mm512_loadu_ps(b0 + k * ldb);
    const __m512 w1 = _mm512_loadu_ps(b1 + k * ldb);
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      const __m512 x = _mm512_set1_ps(a[k * 6 + r]);
      lo[r] = _mm512_fmadd_ps(x, w0, lo[r]);
      hi[r] = _mm512_fmadd_ps(x, w1, hi[r]);
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
    _mm512_storeu_ps(c + r * ldc, lo[r]);
    _mm512_storeu_ps(c + r * ldc + 16, hi[r]);
  }
}

}  // namespace

VARPS_TARGET_AVX512 void fp32_tile_avx512(int rows, const float* a, const float* b0, const float* b1, int64_t ldb, int64_t kc, float* c,
                      int64_t ldc, bool resume) {
  switch (rows) {
    case 1: tile<1>(a, b0, b1, ldb, kc, c, ldc, resume); break;
    case 2: tile<2>(a, b0, b1, ldb, kc, c, ldc, resume); break;
    case 3: tile<3>(a, b0, b1, ldb, kc, c, ldc, resume); break;
    case 4: tile<4>(a, b0, b1, ldb, kc, c, ldc, resume); break;
    case 5: tile<5>(a, b0, b1, ldb, kc, c, ldc, resume); break;
    default: tile<6>(a, b0, b1, ldb, kc, c, ldc, resume); break;
  }
}

}  // namespace varps::cpu

#undef VARPS_TARGET_AVX512

#else

namespace varps::cpu {

// Not compiled on this target: detect_cpu_isa() never reports AVX-512.
void fp32_tile_avx512(int, const float*, const float*, const float*, int64_t, int64_t, float*, int64_t, bool) {
  std::abort();
}

}  // namespace varps::cpu

#endif
