// The AVX512_VNNI register tile of cpu/int8_panels.hpp: 6 rows × 32 columns
// of int32 sums in 12 zmm accumulators, one vpdpbusd per row, panel and
// four k. Compiled for AVX-512 by a target attribute on this file's own
// functions only, and called only where the processor has the extension.
#include <cstdint>
#include <cstdlib>

#include "cpu/int8_panels.hpp"
#include "cpu/kernel_path.hpp"

#if VARPS_CPU_AVX2
#include <immintrin.h>

// The instructions these functions may use: a function attribute, which GCC
// and Clang both honour (Clang ignores GCC's target pragma).
#define VARPS_TARGET_AVX512_VNNI __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")))

namespace varps::cpu {
namespace {

template <int R, int Panels>
VARPS_TARGET_AVX512_VNNI void tile(const uint32_t* a, const uint32_t* b0, const uint32_t* b1, int64_t k4, int32_t* t) {
  __m512i acc[Panels][R];
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
    acc[0][r] = _mm512_setzero_si512();
    if (Panels == 2) acc[Panels - 1][r] = _mm512_setzero_si512();
  }
  for (int64_t k = 0; k < k4; ++k) {
    const __m512i w0 = _mm512_loadu_si512(b0 + k * 16);
    const __m512i w1 = Panels == 2 ? _mm512_loadu_si512(b1 + k * 16) : w0;
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      const __m512i x = _mm512_set1_epi32(static_cast<int>(a[k * 6 + r]));
      acc[0][r] = _mm512_dpbusd_epi32(acc[0][r], x, w0);
      if (Panels == 2) acc[Panels - 1][r] = _mm512_dpbusd_epi32(acc[Panels - 1][r], x, w1);
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
    _mm512_storeu_si512(t + r * 32, acc[0][r]);
    if (Panels == 2) _mm512_storeu_si512(t + r * 32 + 16, acc[Panels - 1][r]);
  }
}

template <int Panels>
VARPS_TARGET_AVX512_VNNI void tile_rows(int rows, const uint32_t* a, const uint32_t* b0, const uint32_t* b1, int64_t k4, int32_t* t) {
  switch (rows) {
    case 1: tile<1, Panels>(a, b0, b1, k4, t); break;
    case 2: tile<2, Panels>(a, b0, b1, k4, t); break;
    case 3: tile<3, Panels>(a, b0, b1, k4, t); break;
    case 4: tile<4, Panels>(a, b0, b1, k4, t); break;
    case 5: tile<5, Panels>(a, b0, b1, k4, t); break;
    default: tile<6, Panels>(a, b0, b1, k4, t); break;
  }
}

}  // namespace

VARPS_TARGET_AVX512_VNNI void int8_tile_vnni(int rows, int panels, const uint32_t* a, const uint32_t* b0, const uint32_t* b1, int64_t k4,
                    int32_t* t) {
  if (panels == 2)
    tile_rows<2>(rows, a, b0, b1, k4, t);
  else
    tile_rows<1>(rows, a, b0, b1, k4, t);
}

}  // namespace varps::cpu

#undef VARPS_TARGET_AVX512_VNNI

#else

namespace varps::cpu {

// Not compiled on this target: detect_cpu_isa() never reports AVX512_VNNI.
void int8_tile_vnni(int, int, const uint32_t*, const uint32_t*, const uint32_t*, int64_t, int32_t*) { std::abort(); }

}  // namespace varps::cpu

#endif
