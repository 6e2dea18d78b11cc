#pragma once
// The register tile of the CPU's matrix products: a 6×16 block of C from a
// 6-row panel of A and a 16-column panel of B, with AVX2 FMA (12 of the 16
// ymm registers hold the accumulators, so the FMA latency is hidden and the
// two FMA pipes stay busy).
//
// Every element of C is one sequential FMA chain over k, whatever the tile
// it falls in, the rows beside it or the blocking of k (a later k block
// resumes from C): a row's result does not depend on how many rows the
// product has, which keeps a stream's image independent of its batch.
//
// The portable path runs the same chains with std::fma (one rounding per
// step, as the AVX2 instruction), so its products carry the same bits; the
// compiler vectorises them where the target has a vector FMA.
#include <cmath>
#include <cstdint>

#include "cpu/kernel_path.hpp"
#include "cpu/panel_geometry.hpp"
#include "cpu/vector_math.hpp"

#if VARPS_CPU_AVX2
#include <immintrin.h>
#endif

namespace varps::cpu {

// What the last k block does to a tile before it is stored.
struct TileEpilogue {
  const float* column_bias = nullptr;  // bias[16] of the tile's columns, added once the sum is complete
  bool gelu = false;                   // then GELU (tanh form)
};

// C[r, 0..16) (row stride ldc) = start + Σ_k a[k·6 + r] · b[k·ldb + 0..16)
// for r < R, with start = C itself when `resume`, else 0; the epilogue
// applies when `last`.
#if VARPS_CPU_AVX2

// The epilogue on the 16 columns of `rows` rows of a finished tile. It reads
// the tile back from L1: applied to the accumulators, its call to the
// vector tanh would keep them in memory through the loop.
inline void apply_epilogue(int rows, float* c, int64_t ldc, const TileEpilogue& epi) {
  if (!epi.column_bias && !epi.gelu) return;
  for (int r = 0; r < rows; ++r)
    for (int half = 0; half < 2; ++half) {
      float* p = c + r * ldc + 8 * half;
      __m256 v = _mm256_loadu_ps(p);
      if (epi.column_bias) v = _mm256_add_ps(v, _mm256_loadu_ps(epi.column_bias + 8 * half));
      if (epi.gelu) v = gelu_tanh8(v);
      _mm256_storeu_ps(p, v);
    }
}

template <int R>
inline void multiply_tile(const float* a, const float* b, int64_t ldb, int64_t kc, float* c, int64_t ldc, bool resume,
                          bool last, const TileEpilogue& epi) {
  static_assert(R >= 1 && R <= kTileRows);
  // Fully unrolled, so that the accumulators live in registers.
  __m256 lo[R], hi[R];
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
    lo[r] = resume ? _mm256_loadu_ps(c + r * ldc) : _mm256_setzero_ps();
    hi[r] = resume ? _mm256_loadu_ps(c + r * ldc + 8) : _mm256_setzero_ps();
  }
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_loadu_ps(b + k * ldb);
    const __m256 b1 = _mm256_loadu_ps(b + k * ldb + 8);
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      const __m256 x = _mm256_broadcast_ss(a + k * kTileRows + r);
      lo[r] = _mm256_fmadd_ps(x, b0, lo[r]);
      hi[r] = _mm256_fmadd_ps(x, b1, hi[r]);
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
    _mm256_storeu_ps(c + r * ldc, lo[r]);
    _mm256_storeu_ps(c + r * ldc + 8, hi[r]);
  }
  if (last) apply_epilogue(R, c, ldc, epi);
}

#else  // portable

inline void apply_epilogue(int rows, float* c, int64_t ldc, const TileEpilogue& epi) {
  if (!epi.column_bias && !epi.gelu) return;
  for (int r = 0; r < rows; ++r)
    for (int j = 0; j < kTileCols; ++j) {
      float v = c[r * ldc + j];
      if (epi.column_bias) v = v + epi.column_bias[j];
      if (epi.gelu) v = gelu_tanh(v);
      c[r * ldc + j] = v;
    }
}

template <int R>
inline void multiply_tile(const float* a, const float* b, int64_t ldb, int64_t kc, float* c, int64_t ldc, bool resume,
                          bool last, const TileEpilogue& epi) {
  static_assert(R >= 1 && R <= kTileRows);
  float acc[R][kTileCols];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < kTileCols; ++j) acc[r][j] = resume ? c[r * ldc + j] : 0.0f;
  for (int64_t k = 0; k < kc; ++k) {
    const float* bk = b + k * ldb;
    for (int r = 0; r < R; ++r) {
      const float x = a[k * kTileRows + r];
      for (int j = 0; j < kTileCols; ++j) acc[r][j] = std::fma(x, bk[j], acc[r][j]);
    }
  }
  const bool epilogue = last && (epi.column_bias || epi.gelu);
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < kTileCols; ++j) {
      float v = acc[r][j];
      if (epilogue && epi.column_bias) v = v + epi.column_bias[j];
      if (epilogue && epi.gelu) v = gelu_tanh(v);
      c[r * ldc + j] = v;
    }
}

#endif

}  // namespace varps::cpu
