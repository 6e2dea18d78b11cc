// The Winograd convolution's row transforms (cpu/winograd_rows.hpp) 16 tiles
// at a time, in zmm registers: half the instructions of the AVX2 form for
// the same lane-wise arithmetic, hence its bits. Compiled for AVX-512 by a
// target attribute on this file's own functions only, and called only where
// the processor has AVX-512.
#include <cstdint>
#include <cstdlib>

#include "cpu/kernel_path.hpp"

#if VARPS_CPU_AVX2
#include <immintrin.h>

// The instructions these functions may use: a function attribute, which GCC
// and Clang both honour (Clang ignores GCC's target pragma).
#define VARPS_WINOGRAD_TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))
#include "cpu/winograd_rows.hpp"

namespace varps::cpu::winograd {
namespace {

typedef float v16 __attribute__((vector_size(64)));

struct WideLanes {
  using V = v16;
  static constexpr int kWidth = 16;

  VARPS_WINOGRAD_TARGET static V load(const float* p) { return (V)_mm512_loadu_ps(p); }
  VARPS_WINOGRAD_TARGET static void store(float* p, const V& v) { _mm512_storeu_ps(p, (__m512)v); }

  // p[m][q] = x[4q + m] for the 64 floats at x: phases m and m + 1 of
  // tiles 0-7 (from the first two vectors) and 8-15 (from the last two)
  // gathered into the halves of one vector each, then the halves sorted.
  VARPS_WINOGRAD_TARGET static void deinterleave4(const float* x, V p[4]) {
    const __m512 r0 = _mm512_loadu_ps(x), r1 = _mm512_loadu_ps(x + 16);
    const __m512 r2 = _mm512_loadu_ps(x + 32), r3 = _mm512_loadu_ps(x + 48);
    const __m512i first_halves = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
    const __m512i second_halves = _mm512_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    for (int m = 0; m < 4; m += 2) {
      const __m512i phases =
          _mm512_setr_epi32(m, m + 4, m + 8, m + 12, m + 16, m + 20, m + 24, m + 28, m + 1, m + 5, m + 9, m + 13,
                            m + 17, m + 21, m + 25, m + 29);
      const __m512 lo = _mm512_permutex2var_ps(r0, phases, r1);  // tiles 0-7: phase m | phase m + 1
      const __m512 hi = _mm512_permutex2var_ps(r2, phases, r3);  // tiles 8-15
      p[m] = (V)_mm512_permutex2var_ps(lo, first_halves, hi);
      p[m + 1] = (V)_mm512_permutex2var_ps(lo, second_halves, hi);
    }
  }

  // x[4q + m] = p[m][q]: phases 0 and 1, and 2 and 3, interleaved into
  // pairs, then the pairs into each vector of four tiles' pixels.
  VARPS_WINOGRAD_TARGET static void interleave4(const V p[4], float* x) {
    const __m512i pairs_lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i pairs_hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    const __m512 p01_lo = _mm512_permutex2var_ps((__m512)p[0], pairs_lo, (__m512)p[1]);  // tiles 0-7
    const __m512 p01_hi = _mm512_permutex2var_ps((__m512)p[0], pairs_hi, (__m512)p[1]);  // tiles 8-15
    const __m512 p23_lo = _mm512_permutex2var_ps((__m512)p[2], pairs_lo, (__m512)p[3]);
    const __m512 p23_hi = _mm512_permutex2var_ps((__m512)p[2], pairs_hi, (__m512)p[3]);
    // Tile q of a vector of four: lanes 2q, 2q + 1 of the 01 pairs, then of the 23 pairs.
    const __m512i quads_first = _mm512_setr_epi32(0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
    const __m512i quads_second = _mm512_setr_epi32(8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31);
    _mm512_storeu_ps(x, _mm512_permutex2var_ps(p01_lo, quads_first, p23_lo));
    _mm512_storeu_ps(x + 16, _mm512_permutex2var_ps(p01_lo, quads_second, p23_lo));
    _mm512_storeu_ps(x + 32, _mm512_permutex2var_ps(p01_hi, quads_first, p23_hi));
    _mm512_storeu_ps(x + 48, _mm512_permutex2var_ps(p01_hi, quads_second, p23_hi));
  }

  // Lanes 1…15 of v, then `next`.
  VARPS_WINOGRAD_TARGET static V next_tile(const V& v, float next) {
    const __m512i up = _mm512_setr_epi32(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16);
    return (V)_mm512_permutex2var_ps((__m512)v, up, _mm512_set1_ps(next));
  }
};

}  // namespace

VARPS_WINOGRAD_TARGET void transform_input_row_avx512(const GroupRows& g, const Tiling& t, int64_t r, int64_t Ci,
                                                      int64_t ci) {
  transform_input_row<WideLanes>(g, t, r, Ci, ci);
}

VARPS_WINOGRAD_TARGET void transform_output_row_avx512(const GroupRows& g, const Tiling& t, int64_t H, int64_t W,
                                                       int64_t ty0, int64_t r, int64_t Co, const float* b,
                                                       bool add_to_out, float* out_n) {
  transform_output_row<WideLanes>(g, t, H, W, ty0, r, Co, b, add_to_out, out_n);
}

}  // namespace varps::cpu::winograd

#undef VARPS_WINOGRAD_TARGET

#else

#define VARPS_WINOGRAD_TARGET
#include "cpu/winograd_rows.hpp"
#undef VARPS_WINOGRAD_TARGET

namespace varps::cpu::winograd {

// Not compiled on this target: detect_cpu_isa() never reports AVX-512.
void transform_input_row_avx512(const GroupRows&, const Tiling&, int64_t, int64_t, int64_t) { std::abort(); }
void transform_output_row_avx512(const GroupRows&, const Tiling&, int64_t, int64_t, int64_t, int64_t, int64_t,
                                 const float*, bool, float*) {
  std::abort();
}

}  // namespace varps::cpu::winograd

#endif
