#include "cpu/int8_panels.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
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

void dequantize_row(const int32_t* s, int cols, float sx, const float* col_scales, const int32_t* offset_sums,
                    const float* bias, bool gelu, float* c) {
  int n = 0;
#if VARPS_CPU_AVX2
  // The loop below, 8 columns at a time: the same operations in the same
  // order (the build does not contract them into FMAs).
  const __m256 vsx = _mm256_set1_ps(sx);
  for (; n + 8 <= cols; n += 8) {
    __m256i sum = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + n));
    if (offset_sums)
      sum = _mm256_sub_epi32(sum,
                             _mm256_slli_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(offset_sums + n)), 7));
    __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(sum), _mm256_mul_ps(vsx, _mm256_loadu_ps(col_scales + n)));
    if (bias) v = _mm256_add_ps(v, _mm256_loadu_ps(bias + n));
    // GELU on the vector before it is stored: gelu_tanh_span's 8 lanes.
    _mm256_storeu_ps(c + n, gelu ? gelu_tanh8(v) : v);
  }
#endif
  const int vectors_done = n;
  for (; n < cols; ++n) {
    // With unsigned A bytes the sums hold (q_x + 128)·q_w: the column's sum ·128 too.
    const int32_t sum = offset_sums ? s[n] - 128 * offset_sums[n] : s[n];
    float v = static_cast<float>(sum) * (sx * col_scales[n]);
    if (bias) v += bias[n];
    c[n] = v;
  }
  if (gelu) gelu_tanh_span(c + vectors_done, static_cast<size_t>(cols - vectors_done));
}

namespace {

int64_t quads_of(int64_t K) { return (K + 3) / 4; }

// A weight's int8 panels: every panel's words, then every column's scale,
// then every column's sum of its q.
struct WeightLayout {
  int64_t np, k4;
  size_t words() const { return static_cast<size_t>(np * k4 * kTileCols); }
  size_t columns() const { return static_cast<size_t>(np * kTileCols); }
  const uint32_t* panel(const void* base, int64_t j) const { return static_cast<const uint32_t*>(base) + j * k4 * kTileCols; }
  const float* scales(const void* base) const { return reinterpret_cast<const float*>(static_cast<const uint32_t*>(base) + words()); }
  const int32_t* sums(const void* base) const { return reinterpret_cast<const int32_t*>(scales(base) + columns()); }
};

WeightLayout layout_of(int64_t N, int64_t K) { return {panels_of(N, kTileCols), quads_of(K)}; }

int8_t quantize(float x, float inv) {
  return static_cast<int8_t>(std::clamp(std::nearbyint(x * inv), -127.0f, 127.0f));
}

uint32_t word_of(const int8_t* q) {
  uint32_t w;
  std::memcpy(&w, q, sizeof w);
  return w;
}

#if VARPS_CPU_AVX2

// R ≤ 3 rows of 16 columns: vpmaddubsw multiplies |x| by w with x's sign
// (pairs at most 2·127·127, which 16 bits hold), vpmaddwd adds the pairs.
template <int R>
void signed_tile(const uint32_t* a, const uint32_t* b, int64_t k4, int32_t* t) {
  __m256i lo[R], hi[R];
  for (int r = 0; r < R; ++r) lo[r] = hi[r] = _mm256_setzero_si256();
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t k = 0; k < k4; ++k) {
    const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + k * kTileCols));
    const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + k * kTileCols + 8));
    for (int r = 0; r < R; ++r) {
      const __m256i x = _mm256_set1_epi32(static_cast<int>(a[k * kTileRows + r]));
      const __m256i ax = _mm256_abs_epi8(x);
      lo[r] = _mm256_add_epi32(lo[r], _mm256_madd_epi16(_mm256_maddubs_epi16(ax, _mm256_sign_epi8(w0, x)), ones));
      hi[r] = _mm256_add_epi32(hi[r], _mm256_madd_epi16(_mm256_maddubs_epi16(ax, _mm256_sign_epi8(w1, x)), ones));
    }
  }
  for (int r = 0; r < R; ++r) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(t + r * 32), lo[r]);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(t + r * 32 + 8), hi[r]);
  }
}

void signed_tile_rows(int rows, const uint32_t* a, const uint32_t* b, int64_t k4, int32_t* t) {
  for (int r0 = 0; r0 < rows; r0 += 3) {
    switch (std::min(3, rows - r0)) {
      case 1: signed_tile<1>(a + r0, b, k4, t + r0 * 32); break;
      case 2: signed_tile<2>(a + r0, b, k4, t + r0 * 32); break;
      default: signed_tile<3>(a + r0, b, k4, t + r0 * 32); break;
    }
  }
}

#else  // portable

void signed_tile_rows(int rows, const uint32_t* a, const uint32_t* b, int64_t k4, int32_t* t) {
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < kTileCols; ++c) {
      int32_t sum = 0;
      for (int64_t k = 0; k < k4; ++k) {
        int8_t x[4], w[4];
        std::memcpy(x, a + k * kTileRows + r, 4);
        std::memcpy(w, b + k * kTileCols + c, 4);
        for (int i = 0; i < 4; ++i) sum += static_cast<int32_t>(x[i]) * w[i];
      }
      t[r * 32 + c] = sum;
    }
}

#endif

// Rows [0, M) of x quantised into A panels (unsigned bytes x + 128 when
// `offset`), their scales into `scales`; the panels spread over the OpenMP
// threads unless called inside a parallel region.
void pack_a(const float* x, int64_t M, int64_t K, int64_t ldx, bool offset, uint32_t* panels, float* scales) {
  const int64_t k4 = quads_of(K), mp = panels_of(M, kTileRows);
#pragma omp parallel if (!omp_in_parallel() && M * K > 65536)
  {
    std::vector<int8_t> q(static_cast<size_t>(4 * k4), 0);
#pragma omp for schedule(static)
    for (int64_t i = 0; i < mp; ++i) {
      uint32_t* dst = panels + i * k4 * kTileRows;
      for (int r = 0; r < kTileRows; ++r) {
        const int64_t m = i * kTileRows + r;
        if (m < M)
          scales[m] = quantize_row(x + m * ldx, K, q.data());
        else
          std::fill(q.begin(), q.end(), int8_t{0});
        for (int64_t k = 0; k < k4; ++k) {
          uint32_t w = word_of(q.data() + 4 * k);
          if (offset) w ^= 0x80808080u;  // q + 128 as an unsigned byte
          dst[k * kTileRows + r] = w;
        }
      }
    }
  }
}

// C's tile of A panel i (packed by pack_a) and B panels j … j + panels − 1:
// the integer sums, then the scales, the bias and GELU.
void multiply_tile(const uint32_t* a, const float* row_scales, const void* b, const WeightLayout& wl, int64_t M,
                   int64_t N, const ProductOutput& out, bool vnni, int64_t i, int64_t j, int panels) {
  alignas(64) int32_t tile[kTileRows * 32];
  const int64_t k4 = wl.k4;
  const uint32_t* b0 = wl.panel(b, j);
  const uint32_t* b1 = wl.panel(b, j + panels - 1);
  const int64_t n0 = j * kTileCols;
  const int cols = static_cast<int>(std::min<int64_t>(kTileCols * panels, N - n0));
  const int rows = static_cast<int>(std::min<int64_t>(kTileRows, M - i * kTileRows));
  const uint32_t* ap = a + i * kTileRows * k4;
  if (vnni) {
    int8_tile_vnni(rows, panels, ap, b0, b1, k4, tile);
  } else {
    signed_tile_rows(rows, ap, b0, k4, tile);
    if (panels == 2) signed_tile_rows(rows, ap, b1, k4, tile + kTileCols);
  }
  const float* col_scales = wl.scales(b);
  const int32_t* col_sums = wl.sums(b);
  for (int r = 0; r < rows; ++r)
    dequantize_row(tile + r * 32, cols, row_scales[i * kTileRows + r], col_scales + n0, vnni ? col_sums + n0 : nullptr,
                   out.column_bias ? out.column_bias + n0 : nullptr, out.gelu,
                   out.c + (i * kTileRows + r) * out.ldc + n0);
}

}  // namespace

namespace {

// max_k |x[k]|, and whether every x[k] is finite (the maximum is exact, so
// the vector's order gives the loop's value).
float largest_magnitude(const float* x, int64_t K, bool& finite) {
  float amax = 0.0f;
  finite = true;
  int64_t k = 0;
#if VARPS_CPU_AVX2
  const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 infinity = _mm256_set1_ps(std::numeric_limits<float>::infinity());
  __m256 largest = _mm256_setzero_ps(), all_finite = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
  for (; k + 8 <= K; k += 8) {
    const __m256 a = _mm256_and_ps(_mm256_loadu_ps(x + k), magnitude);
    largest = _mm256_max_ps(largest, a);
    all_finite = _mm256_and_ps(all_finite, _mm256_cmp_ps(a, infinity, _CMP_LT_OQ));  // false for NaN and ±inf
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, largest);
  for (const float l : lanes) amax = std::max(amax, l);
  finite = _mm256_movemask_ps(all_finite) == 0xff;
#endif
  for (; k < K; ++k) {
    const float a = std::abs(x[k]);
    finite = finite && std::isfinite(a);
    amax = std::max(amax, a);
  }
  return amax;
}

}  // namespace

float quantize_row(const float* x, int64_t K, int8_t* q) {
  bool finite = true;
  const float amax = largest_magnitude(x, K, finite);
  if (!finite || amax == 0.0f) {
    // A NaN or an infinity makes the row's products NaN, as in float32.
    std::fill(q, q + K, int8_t{0});
    return finite ? 0.0f : std::nanf("");
  }
  const float inv = 127.0f / amax;
  int64_t k = 0;
#if VARPS_CPU_AVX2
  // vcvtps2dq rounds to nearest, ties to even, as std::nearbyint does in the
  // default rounding mode; |x·inv| <= 127 but for its own rounding.
  const __m256 vinv = _mm256_set1_ps(inv);
  const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
  for (; k + 8 <= K; k += 8) {
    __m256i v = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + k), vinv));
    v = _mm256_min_epi32(_mm256_max_epi32(v, lo), hi);
    const __m128i words = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(q + k), _mm_packs_epi16(words, words));
  }
#endif
  for (; k < K; ++k) q[k] = quantize(x[k], inv);
  return amax / 127.0f;
}

size_t int8_b_panel_bytes(int64_t N, int64_t K) {
  const WeightLayout wl = layout_of(N, K);
  return (wl.words() + 2 * wl.columns()) * 4;
}

float quantize_weight_row(const float* w, int64_t K, int8_t* q, int32_t* sum) {
  const float scale = quantize_row(w, K, q);
  int32_t s = 0;
  for (int64_t k = 0; k < K; ++k) s += q[k];
  *sum = s;
  return scale;
}

void pack_int8_b_panels_from_rows(const float* w, int64_t N, int64_t K, int64_t ldw, void* panels) {
  const WeightLayout wl = layout_of(N, K);
  float* scales = const_cast<float*>(wl.scales(panels));
  int32_t* sums = const_cast<int32_t*>(wl.sums(panels));
#pragma omp parallel for schedule(static) if (N * K > 65536)
  for (int64_t j = 0; j < wl.np; ++j) {
    uint32_t* dst = const_cast<uint32_t*>(wl.panel(panels, j));
    std::vector<int8_t> q(static_cast<size_t>(4 * wl.k4), 0);
    for (int c = 0; c < kTileCols; ++c) {
      const int64_t n = j * kTileCols + c;
      std::fill(q.begin(), q.end(), int8_t{0});
      if (n < N) {
        scales[n] = quantize_weight_row(w + n * ldw, K, q.data(), &sums[n]);
      } else {  // a padding column: zero
        scales[n] = 0.0f;
        sums[n] = 0;
      }
      for (int64_t k = 0; k < wl.k4; ++k) dst[k * kTileCols + c] = word_of(q.data() + 4 * k);
    }
  }
}

size_t int8_product_scratch_floats(int64_t M, int64_t K) {
  return static_cast<size_t>(panels_of(M, kTileRows) * kTileRows * (quads_of(K) + 1));
}

void multiply_int8_panels(const float* a, int64_t lda, const void* b_panels, int64_t M, int64_t N, int64_t K,
                          const ProductOutput& out, const CpuIsa& isa, ScratchPool* scratch) {
  if (out.accumulate) throw Error("int8 products cannot add to their output");
  if (M <= 0 || N <= 0) return;
  const WeightLayout wl = layout_of(N, K);
  const int64_t mp = panels_of(M, kTileRows);
  const bool vnni = isa.avx512_vnni;
  // A quantised once, for every thread: its panels, then its rows' scales.
  ScratchPool local;
  const ScratchPool::Lease lease = (scratch ? *scratch : local).take(int8_product_scratch_floats(M, K));
  const uint32_t* a_panels = reinterpret_cast<uint32_t*>(lease.data());
  float* row_scales = lease.data() + mp * kTileRows * wl.k4;
  pack_a(a, M, K, lda, vnni, reinterpret_cast<uint32_t*>(lease.data()), row_scales);
  run_tile_schedule(TileSchedule{mp, wl.np, 4 * kTileRows * wl.k4, 4 * kTileCols * wl.k4},
                    [&](int64_t i, int64_t j, int panels) {
                      multiply_tile(a_panels, row_scales, b_panels, wl, M, N, out, vnni, i, j, panels);
                    });
}

}  // namespace varps::cpu
