#include "cpu/bf16_panels.hpp"

#include <omp.h>

#include <algorithm>
#include <vector>

#include "cpu/kernel_path.hpp"
#include "cpu/panel_geometry.hpp"
#include "cpu/tile_schedule.hpp"
#include "cpu/vector_math.hpp"
#include "varps/error.hpp"

#if VARPS_CPU_AVX2
#include <immintrin.h>
#endif

namespace varps::cpu {

namespace {

int64_t pairs_of(int64_t K) { return (K + 1) / 2; }

uint32_t pair_word(const float* row, int64_t k, int64_t K) {
  const uint32_t lo = round_to_bf16(row[k]);
  const uint32_t hi = k + 1 < K ? round_to_bf16(row[k + 1]) : 0u;
  return lo | hi << 16;
}

float rounded(float x) { return bf16_to_float(round_to_bf16(x)); }

#if VARPS_CPU_AVX2
// round_to_bf16 in 8 lanes, each lane's bf16 in its high half (the low half
// zero): to nearest, ties to even, a NaN made quiet with its sign kept.
inline __m256i round8_to_bf16_high(__m256 x) {
  const __m256i bits = _mm256_castps_si256(x);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
  const __m256i rounded = _mm256_add_epi32(bits, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb));
  const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(bits, _mm256_set1_epi32(0x7fffffff)),
                                         _mm256_set1_epi32(0x7f800000));
  const __m256i quiet = _mm256_or_si256(bits, _mm256_set1_epi32(0x00400000));
  return _mm256_and_si256(_mm256_blendv_epi8(rounded, quiet, nan), _mm256_set1_epi32(static_cast<int>(0xffff0000u)));
}
#endif

#if VARPS_CPU_AVX2

// One 16-column panel for R rows: 12 ymm accumulators for 6 rows; the odd
// k's products of every row first, then the even k's, so that only two
// converted halves of B are live at a time.
template <int R>
void fma_tile(const float* a, const uint32_t* b, int64_t k2, float* t) {
  __m256 lo[R], hi[R];
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) lo[r] = hi[r] = _mm256_setzero_ps();
  const __m256i high_mask = _mm256_set1_epi32(static_cast<int>(0xffff0000u));
  for (int64_t k = 0; k < k2; ++k) {
    const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + k * 16));
    const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + k * 16 + 8));
    const float* x = a + 2 * k * kTileRows;  // row r's even k at x[r], odd k at x[kTileRows + r]
    {
      const __m256 odd0 = _mm256_castsi256_ps(_mm256_and_si256(w0, high_mask));
      const __m256 odd1 = _mm256_castsi256_ps(_mm256_and_si256(w1, high_mask));
#pragma GCC unroll 6
      for (int r = 0; r < R; ++r) {
        const __m256 v = _mm256_broadcast_ss(x + kTileRows + r);
        lo[r] = _mm256_fmadd_ps(v, odd0, lo[r]);
        hi[r] = _mm256_fmadd_ps(v, odd1, hi[r]);
      }
    }
    {
      const __m256 even0 = _mm256_castsi256_ps(_mm256_slli_epi32(w0, 16));
      const __m256 even1 = _mm256_castsi256_ps(_mm256_slli_epi32(w1, 16));
#pragma GCC unroll 6
      for (int r = 0; r < R; ++r) {
        const __m256 v = _mm256_broadcast_ss(x + r);
        lo[r] = _mm256_fmadd_ps(v, even0, lo[r]);
        hi[r] = _mm256_fmadd_ps(v, even1, hi[r]);
      }
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
    _mm256_storeu_ps(t + r * 32, lo[r]);
    _mm256_storeu_ps(t + r * 32 + 8, hi[r]);
  }
}

#else  // portable: the same chains with std::fma

// The two halves of a word as floats.
float low_half(uint32_t w) { return bf16_to_float(static_cast<uint16_t>(w)); }
float high_half(uint32_t w) { return bf16_to_float(static_cast<uint16_t>(w >> 16)); }

template <int R>
void fma_tile(const float* a, const uint32_t* b, int64_t k2, float* t) {
  float acc[R][kTileCols] = {};
  for (int64_t k = 0; k < k2; ++k) {
    const float* x = a + 2 * k * kTileRows;
    for (int r = 0; r < R; ++r)
      for (int j = 0; j < kTileCols; ++j) {
        const uint32_t w = b[k * kTileCols + j];
        acc[r][j] = std::fma(x[kTileRows + r], high_half(w), acc[r][j]);
        acc[r][j] = std::fma(x[r], low_half(w), acc[r][j]);
      }
  }
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < kTileCols; ++j) t[r * 32 + j] = acc[r][j];
}

#endif

void fma_tile_rows(int rows, const float* a, const uint32_t* b, int64_t k2, float* t) {
  switch (rows) {
    case 1: fma_tile<1>(a, b, k2, t); break;
    case 2: fma_tile<2>(a, b, k2, t); break;
    case 3: fma_tile<3>(a, b, k2, t); break;
    case 4: fma_tile<4>(a, b, k2, t); break;
    case 5: fma_tile<5>(a, b, k2, t); break;
    default: fma_tile<6>(a, b, k2, t); break;
  }
}

// C's tile of A panel i and B panels j … j + panels − 1, A packed whole
// beforehand: words for the AVX512_BF16 tile, rounded floats for the FMA one.
void multiply_tile(const void* a, const uint32_t* b, int64_t M, int64_t N, int64_t K, const ProductOutput& out,
                   bool avx512, int64_t i, int64_t j, int panels) {
  alignas(64) float tile[kTileRows * 32];
  const int64_t k2 = pairs_of(K);
  const uint32_t* b0 = b + j * k2 * kTileCols;
  const uint32_t* b1 = b0 + k2 * kTileCols;
  const int64_t n0 = j * kTileCols;
  const int cols = static_cast<int>(std::min<int64_t>(kTileCols * panels, N - n0));
  const int rows = static_cast<int>(std::min<int64_t>(kTileRows, M - i * kTileRows));
  const void* ap = static_cast<const char*>(a) + i * (avx512 ? 4 : 8) * kTileRows * k2;
  if (avx512) {
    bf16_tile_avx512(rows, panels, static_cast<const uint32_t*>(ap), b0, b1, k2, tile);
  } else {
    fma_tile_rows(rows, static_cast<const float*>(ap), b0, k2, tile);
    if (panels == 2) fma_tile_rows(rows, static_cast<const float*>(ap), b1, k2, tile + kTileCols);
  }
  for (int r = 0; r < rows; ++r) {
    float* c = out.c + (i * kTileRows + r) * out.ldc + n0;
    const float* s = tile + r * 32;
    if (out.accumulate)
      for (int n = 0; n < cols; ++n) c[n] += out.column_bias ? s[n] + out.column_bias[n0 + n] : s[n];
    else if (out.column_bias)
      for (int n = 0; n < cols; ++n) c[n] = s[n] + out.column_bias[n0 + n];
    else
      std::copy(s, s + cols, c);
    if (out.gelu) gelu_tanh_span(c, static_cast<size_t>(cols));
  }
}

}  // namespace

void round_to_bf16_pairs(const float* x, int64_t K, uint32_t* words) {
  int64_t k = 0;
#if VARPS_CPU_AVX2
  // 16 values: their high halves packed to 16 bits (each below 2^16, so
  // packus keeps it) are the 8 words, in 128-bit lanes 0, 2, 1, 3.
  for (; k + 16 <= K; k += 16) {
    const __m256i lo = _mm256_srli_epi32(round8_to_bf16_high(_mm256_loadu_ps(x + k)), 16);
    const __m256i hi = _mm256_srli_epi32(round8_to_bf16_high(_mm256_loadu_ps(x + k + 8)), 16);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(words + k / 2),
                        _mm256_permute4x64_epi64(_mm256_packus_epi32(lo, hi), 0xd8));
  }
#endif
  for (; k < K; k += 2) words[k / 2] = pair_word(x, k, K);
}

void round_to_bf16_rows(const float* even, const float* odd, int64_t n, uint32_t* words) {
  int64_t i = 0;
#if VARPS_CPU_AVX2
  for (; i + 8 <= n; i += 8) {
    const __m256i lo = _mm256_srli_epi32(round8_to_bf16_high(_mm256_loadu_ps(even + i)), 16);
    const __m256i hi = odd ? round8_to_bf16_high(_mm256_loadu_ps(odd + i)) : _mm256_setzero_si256();
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(words + i), _mm256_or_si256(lo, hi));
  }
#endif
  for (; i < n; ++i)
    words[i] = static_cast<uint32_t>(round_to_bf16(even[i])) | (odd ? static_cast<uint32_t>(round_to_bf16(odd[i])) << 16 : 0u);
}

size_t bf16_b_panel_words(int64_t N, int64_t K) { return static_cast<size_t>(panels_of(N, kTileCols) * kTileCols * pairs_of(K)); }
size_t bf16_a_panel_words(int64_t M, int64_t K) { return static_cast<size_t>(panels_of(M, kTileRows) * kTileRows * pairs_of(K)); }
size_t bf16_a_panel_floats(int64_t M, int64_t K) { return 2 * bf16_a_panel_words(M, K); }

void pack_bf16_b_panels_from_rows(const float* w, int64_t N, int64_t K, int64_t ldw, uint32_t* panels) {
  const int64_t np = panels_of(N, kTileCols), k2 = pairs_of(K);
#pragma omp parallel for schedule(static) if (N * K > 65536)
  for (int64_t j = 0; j < np; ++j) {
    uint32_t* dst = panels + j * k2 * kTileCols;
    for (int c = 0; c < kTileCols; ++c) {
      const int64_t n = j * kTileCols + c;
      for (int64_t k = 0; k < k2; ++k) dst[k * kTileCols + c] = n < N ? pair_word(w + n * ldw, 2 * k, K) : 0u;
    }
  }
}

void pack_bf16_a_panels(const float* x, int64_t M, int64_t K, int64_t ldx, uint32_t* panels) {
  const int64_t k2 = pairs_of(K), mp = panels_of(M, kTileRows);
  // A row rounded into consecutive halves is its words (little-endian: the
  // even k in the low half), written into the panel's column.
#pragma omp parallel if (!omp_in_parallel() && M * K > 65536)
  {
  std::vector<uint32_t> words(static_cast<size_t>(k2), 0);
#pragma omp for schedule(static)
  for (int64_t i = 0; i < mp; ++i) {
    uint32_t* dst = panels + i * k2 * kTileRows;
    for (int r = 0; r < kTileRows; ++r) {
      const int64_t m = i * kTileRows + r;
      if (m < M)
        round_to_bf16_pairs(x + m * ldx, K, words.data());
      else
        std::fill(words.begin(), words.end(), 0u);
      for (int64_t k = 0; k < k2; ++k) dst[k * kTileRows + r] = words[k];
    }
  }
  }
}

void pack_bf16_a_panels_as_floats(const float* x, int64_t M, int64_t K, int64_t ldx, float* panels) {
  const int64_t k2 = pairs_of(K), mp = panels_of(M, kTileRows);
#pragma omp parallel for schedule(static) if (!omp_in_parallel() && M * K > 65536)
  for (int64_t i = 0; i < mp; ++i) {
    float* dst = panels + i * 2 * k2 * kTileRows;
    for (int r = 0; r < kTileRows; ++r) {
      const int64_t m = i * kTileRows + r;
      for (int64_t k = 0; k < 2 * k2; ++k) dst[k * kTileRows + r] = m < M && k < K ? rounded(x[m * ldx + k]) : 0.0f;
    }
  }
}

void bf16_tile_fma(int rows, int panels, const float* a, const uint32_t* b0, const uint32_t* b1, int64_t k2,
                   float* t) {
  fma_tile_rows(rows, a, b0, k2, t);
  if (panels == 2) fma_tile_rows(rows, a, b1, k2, t + kTileCols);
}

size_t bf16_product_scratch_floats(int64_t M, int64_t K) { return bf16_a_panel_floats(M, K); }

size_t bf16_a_panel_bytes(const CpuIsa& isa, int64_t M, int64_t K) {
  return 4 * (isa.avx512_bf16 ? bf16_a_panel_words(M, K) : bf16_a_panel_floats(M, K));
}

void pack_bf16_a_panels_for(const CpuIsa& isa, const float* x, int64_t M, int64_t K, int64_t ldx, void* panels) {
  if (isa.avx512_bf16)
    pack_bf16_a_panels(x, M, K, ldx, static_cast<uint32_t*>(panels));
  else
    pack_bf16_a_panels_as_floats(x, M, K, ldx, static_cast<float*>(panels));
}

void pack_bf16_b_panels_from_float_panels(const float* panels, int64_t N, int64_t K, uint32_t* words) {
  const int64_t np = panels_of(N, kTileCols), k2 = pairs_of(K);
#pragma omp parallel for schedule(static) if (!omp_in_parallel() && N * K > 65536)
  for (int64_t j = 0; j < np; ++j)
    for (int64_t k = 0; k < k2; ++k) {
      const float* even = panels + (j * K + 2 * k) * kTileCols;
      round_to_bf16_rows(even, 2 * k + 1 < K ? even + kTileCols : nullptr, kTileCols, words + (j * k2 + k) * kTileCols);
    }
}

void multiply_bf16_prepacked(const void* a_panels, const uint32_t* b_panels, int64_t M, int64_t N, int64_t K,
                             const ProductOutput& out, const CpuIsa& isa) {
  if (M <= 0 || N <= 0) return;
  const int64_t k2 = pairs_of(K);
  const bool avx512 = isa.avx512_bf16;
  run_tile_schedule(TileSchedule{panels_of(M, kTileRows), panels_of(N, kTileCols), (avx512 ? 4 : 8) * kTileRows * k2, 4 * kTileCols * k2},
                    [&](int64_t i, int64_t j, int panels) {
                      multiply_tile(a_panels, b_panels, M, N, K, out, avx512, i, j, panels);
                    });
}

void multiply_bf16_panels(const float* a, int64_t lda, const uint32_t* b_panels, int64_t M, int64_t N, int64_t K,
                          const ProductOutput& out, const CpuIsa& isa, ScratchPool* scratch) {
  if (out.accumulate) throw Error("bf16 products cannot add to their output");
  if (M <= 0 || N <= 0) return;
  // A rounded and packed once, for every thread.
  ScratchPool local;
  const ScratchPool::Lease lease = (scratch ? *scratch : local).take(bf16_product_scratch_floats(M, K));
  pack_bf16_a_panels_for(isa, a, M, K, lda, lease.data());
  multiply_bf16_prepacked(lease.data(), b_panels, M, N, K, out, isa);
}

}  // namespace varps::cpu
