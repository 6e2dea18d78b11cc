#include "cpu/winograd.hpp"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu/channel_norm.hpp"
#include "cpu/gemm_kernel.hpp"
#include "cpu/kernel_path.hpp"
#include "cpu/panel_gemm.hpp"
#include "cpu/vector_math.hpp"

#if !VARPS_CPU_AVX2
// Without AVX, GCC warns that returning a v8 by value has another ABI than
// with AVX (the portable helpers take it by reference for the same reason);
// these functions are internal to this file, so no call crosses that ABI.
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

// The row transforms, 8 tiles at a time under the build's own flags.
#define VARPS_WINOGRAD_TARGET
#include "cpu/winograd_rows.hpp"
#undef VARPS_WINOGRAD_TARGET

#if VARPS_CPU_AVX2
#include <immintrin.h>
#endif

namespace varps::cpu {

namespace {

using winograd::GroupRows;
using winograd::kFreq;
using winograd::kOut;
using winograd::kPatch;
using winograd::Tiling;

constexpr int kLanes = 8;         // tiles transformed together by the AVX2 transforms
constexpr int kWideLanes = 16;    // by the AVX-512 ones
constexpr int64_t kBlockTiles = 64;
constexpr size_t kMaxWeightFloats = size_t{4} << 20;
// Smaller maps have too few tiles to pay for the transforms, and keeping
// them direct keeps the latent-sized convolutions of the residual path
// (Phi, whose error f_hat accumulates over the scales) at the direct sum's
// accuracy.
constexpr int64_t kMinSide = 32;

int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// Tile rows a group takes on a map of `tiles_per_row` padded tiles per row.
int64_t rows_per_group(int64_t tiles_per_row) { return std::max<int64_t>(1, kBlockTiles / tiles_per_row); }

// The tiles of an H×W map transformed `lanes` at a time: 16 where `isa`
// has AVX-512 and a row padded to 16 tiles holds no more than one padded
// to 8 (else the padding would cost more than the wider vectors save).
int transform_lanes(int64_t W, const CpuIsa& isa) {
  const int64_t tw = (W + kOut - 1) / kOut;
  return isa.avx512 && round_up(tw, kWideLanes) == round_up(tw, kLanes) ? kWideLanes : kLanes;
}

// With `images` images and `threads` threads; a small map's rows are split
// into as many groups as there are threads (else one thread would take a
// 32×32 map alone).
Tiling tiling(int64_t H, int64_t W, int lanes, int64_t images, int threads) {
  Tiling t;
  t.lanes = lanes;
  t.th = (H + kOut - 1) / kOut;
  t.tw = (W + kOut - 1) / kOut;
  t.tiles_per_row = round_up(t.tw, lanes);
  const int64_t groups_per_image = (threads + images - 1) / images;
  t.rows_per_group =
      std::min({t.th, rows_per_group(t.tiles_per_row), std::max<int64_t>(1, t.th / groups_per_image)});
  t.groups = (t.th + t.rows_per_group - 1) / t.rows_per_group;
  t.padded_tiles = round_up(t.rows_per_group * t.tiles_per_row, kTileCols);
  // Input columns −1 … 4·tiles_per_row + 6: a vector of tiles reads
  // 4·lanes + 2 columns from its first, and whole vectors.
  t.row_width = kOut * t.tiles_per_row + lanes;
  return t;
}

// Four lanes of float64, for the weights' transform.
typedef double d4 __attribute__((vector_size(32)));

// The 6 output channels of one (ci, tap) of a weight panel, widened to
// double: lanes 0-3 in lo, 4-5 in hi (its lanes 2-3 zero).
inline void load_panel_taps(const float* src, d4& lo, d4& hi) {
#if VARPS_CPU_AVX2
  lo = (d4)_mm256_cvtps_pd(_mm_loadu_ps(src));
  hi = (d4)_mm256_cvtps_pd(_mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(src + 4))));
#else
  lo = d4{src[0], src[1], src[2], src[3]};
  hi = d4{src[4], src[5], 0.0, 0.0};
#endif
}

// The inverse, each lane rounded to float once.
inline void store_panel_taps(const d4& lo, const d4& hi, float* dst) {
#if VARPS_CPU_AVX2
  _mm_storeu_ps(dst, _mm256_cvtpd_ps((__m256d)lo));
  _mm_storel_pi(reinterpret_cast<__m64*>(dst + 4), _mm256_cvtpd_ps((__m256d)hi));
#else
  for (int l = 0; l < 4; ++l) dst[l] = static_cast<float>(lo[l]);
  for (int l = 0; l < 2; ++l) dst[4 + l] = static_cast<float>(hi[l]);
#endif
}

// G·(g0, g1, g2): (g0/4, −(g0+g1+g2)/6, −(g0−g1+g2)/6, g0/24 + g1/12 + g2/6,
// g0/24 − g1/12 + g2/6, g2), lane-wise. Each division by 6, 12 or 24 is
// one by 3 scaled by a power of two, which gives the same double exactly
// (the scaling commutes with the rounding): 5 divisions, not 9, in the
// transform that dominates the weights' cost.
template <typename T>
inline void transform_filter_1d(T g0, T g1, T g2, T v[kPatch]) {
  const T third0 = g0 / 3, third1 = g1 / 3, third2 = g2 / 3;
  v[0] = g0 * 0.25;
  v[1] = -((g0 + g1 + g2) / 3) * 0.5;
  v[2] = -((g0 - g1 + g2) / 3) * 0.5;
  v[3] = third0 * 0.125 + third1 * 0.25 + third2 * 0.5;
  v[4] = third0 * 0.125 - third1 * 0.25 + third2 * 0.5;
  v[5] = g2;
}

// u = G·g·Gᵀ for 3×3 filters, lane-wise.
template <typename T>
void transform_filter(const T g[3][3], T u[kPatch][kPatch]) {
  T t[kPatch][3];
  for (int c = 0; c < 3; ++c) {
    T v[kPatch];
    transform_filter_1d(g[0][c], g[1][c], g[2][c], v);
    for (int r = 0; r < kPatch; ++r) t[r][c] = v[r];
  }
  for (int r = 0; r < kPatch; ++r) transform_filter_1d(t[r][0], t[r][1], t[r][2], u[r]);
}

// U_ξ as A panels of [Co, Ci], ξ = 6·row + column of the transformed
// filter, in double and rounded once. The 6 output channels of a weight
// panel are consecutive for each (ci, tap): lanes 0-3 and 4-5 of two
// vectors.
void transform_weights(const float* w_panels, int64_t Ci, int64_t Co, float* U) {
  const size_t per_freq = a_panel_floats(Co, Ci);
  const int64_t Kdim = Ci * 9, panels = (Co + kTileRows - 1) / kTileRows;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t panel = 0; panel < panels; ++panel)
    for (int64_t ci = 0; ci < Ci; ++ci) {
      d4 lo[3][3], hi[3][3], ulo[kPatch][kPatch], uhi[kPatch][kPatch];
      for (int k = 0; k < 9; ++k) {
        load_panel_taps(w_panels + (panel * Kdim + ci * 9 + k) * kTileRows, lo[k / 3][k % 3], hi[k / 3][k % 3]);
      }
      transform_filter(lo, ulo);
      transform_filter(hi, uhi);
      for (int f = 0; f < kFreq; ++f) {
        store_panel_taps(ulo[f / kPatch][f % kPatch], uhi[f / kPatch][f % kPatch],
                         U + f * per_freq + (panel * Ci + ci) * kTileRows);
      }
    }
}

// Eight lanes of float32, for the transforms' arithmetic.
typedef float v8 __attribute__((vector_size(32)));

#if VARPS_CPU_AVX2
inline v8 load8(const float* p) { return (v8)_mm256_loadu_ps(p); }
inline void store8(float* p, v8 v) { _mm256_storeu_ps(p, (__m256)v); }
#else
inline v8 load8(const float* p) {
  v8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store8(float* p, const v8& v) { std::memcpy(p, &v, sizeof v); }
#endif

#if VARPS_CPU_AVX2

// p[m][q] = x[4q + m] for the 32 floats at x: the 8×4 transpose.
inline void deinterleave4(const float* x, v8 p[4]) {
  const __m256i pairs = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  __m256 r[4];
  for (int i = 0; i < 4; ++i) r[i] = _mm256_permutevar8x32_ps(_mm256_loadu_ps(x + 8 * i), pairs);
  const __m256 lo01 = _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(r[0]), _mm256_castps_pd(r[1])));
  const __m256 hi01 = _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(r[0]), _mm256_castps_pd(r[1])));
  const __m256 lo23 = _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(r[2]), _mm256_castps_pd(r[3])));
  const __m256 hi23 = _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(r[2]), _mm256_castps_pd(r[3])));
  p[0] = (v8)_mm256_permute2f128_ps(lo01, lo23, 0x20);
  p[2] = (v8)_mm256_permute2f128_ps(lo01, lo23, 0x31);
  p[1] = (v8)_mm256_permute2f128_ps(hi01, hi23, 0x20);
  p[3] = (v8)_mm256_permute2f128_ps(hi01, hi23, 0x31);
}

// x[4q + m] = p[m][q]: the inverse of deinterleave4.
inline void interleave4(const v8 p[4], float* x) {
  const __m256 lo01 = _mm256_permute2f128_ps((__m256)p[0], (__m256)p[2], 0x20);
  const __m256 lo23 = _mm256_permute2f128_ps((__m256)p[0], (__m256)p[2], 0x31);
  const __m256 hi01 = _mm256_permute2f128_ps((__m256)p[1], (__m256)p[3], 0x20);
  const __m256 hi23 = _mm256_permute2f128_ps((__m256)p[1], (__m256)p[3], 0x31);
  const __m256i back = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
  const __m256 r[4] = {
      _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(lo01), _mm256_castps_pd(hi01))),
      _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(lo01), _mm256_castps_pd(hi01))),
      _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(lo23), _mm256_castps_pd(hi23))),
      _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(lo23), _mm256_castps_pd(hi23)))};
  for (int i = 0; i < 4; ++i) _mm256_storeu_ps(x + 8 * i, _mm256_permutevar8x32_ps(r[i], back));
}

// Lanes 1…7 of v, then `next`: the values of the following tiles.
inline v8 next_tile(v8 v, float next) {
  const __m256i up = _mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 7);
  return (v8)_mm256_blend_ps(_mm256_permutevar8x32_ps((__m256)v, up), _mm256_set1_ps(next), 0x80);
}

#else  // portable: the same lane moves one by one

inline void deinterleave4(const float* x, v8 p[4]) {
  for (int m = 0; m < 4; ++m)
    for (int q = 0; q < kLanes; ++q) p[m][q] = x[4 * q + m];
}

inline void interleave4(const v8 p[4], float* x) {
  for (int m = 0; m < 4; ++m)
    for (int q = 0; q < kLanes; ++q) x[4 * q + m] = p[m][q];
}

inline v8 next_tile(const v8& v, float next) {
  v8 r;
  for (int q = 0; q + 1 < kLanes; ++q) r[q] = v[q + 1];
  r[kLanes - 1] = next;
  return r;
}

#endif

// The AVX2 (or portable) vector of the row transforms.
struct NarrowLanes {
  using V = v8;
  static constexpr int kWidth = kLanes;
  static V load(const float* p) { return load8(p); }
  static void store(float* p, const V& v) { store8(p, v); }
  static void deinterleave4(const float* x, V p[4]) { cpu::deinterleave4(x, p); }
  static void interleave4(const V p[4], float* x) { cpu::interleave4(p, x); }
  static V next_tile(const V& v, float next) { return cpu::next_tile(v, next); }
};

// A thread's buffers for one group of tiles (winograd::GroupRows).
struct GroupBuffers {
  size_t patch_floats = 0, rows_floats = 0, columns_floats = 0, products_floats = 0;
  GroupRows rows;
  ScratchPool::Lease lease;

  GroupBuffers(const Tiling& t, int64_t Ci, int64_t Co) {
    patch_floats = static_cast<size_t>(kPatch * t.row_width);
    rows_floats = static_cast<size_t>(kPatch * t.row_width);
    rows.column_freq = b_panel_floats(t.padded_tiles, Ci);
    columns_floats = static_cast<size_t>(kFreq) * rows.column_freq;
    rows.product_freq = static_cast<size_t>(Co * t.padded_tiles);
    products_floats = static_cast<size_t>(kFreq) * rows.product_freq;
  }
  size_t floats() const { return patch_floats + rows_floats + columns_floats + products_floats; }
  // The transformed inputs' padding lanes are multiplied too (their
  // products are not read): zero, not whatever the pool's memory held.
  void take(ScratchPool& pool) {
    lease = pool.take(floats());
    rows.patch = lease.data();
    rows.rows = rows.patch + patch_floats;
    rows.columns = rows.rows + rows_floats;
    rows.products = rows.columns + columns_floats;
    std::fill(rows.columns, rows.columns + columns_floats, 0.0f);
  }
};

// dst[x] = silu(cn(src[x])) (or cn(src[x])) for x < n: the values
// group_norm() and silu_span() would give, in one pass.
void normalize_span(const float* src, int64_t n, const ChannelNorm& cn, bool silu, float* dst) {
  int64_t x = 0;
#if VARPS_CPU_AVX2
  const __m256 mean = _mm256_set1_ps(cn.mean), scale = _mm256_set1_ps(cn.scale), shift = _mm256_set1_ps(cn.shift);
  for (; x + 8 <= n; x += 8) {
    const __m256 v = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(src + x), mean), scale), shift);
    _mm256_storeu_ps(dst + x, silu ? silu8(v) : v);
  }
#endif
  for (; x < n; ++x) dst[x] = silu ? cpu::silu(cn(src[x])) : cn(src[x]);
}

// Rows of input channel ci that tile row ty reads (4ty − 1 … 4ty + 4),
// normalised when asked, column −1 first, zero outside the map.
void read_patch_rows(const float* plane, int64_t H, int64_t W, int64_t ty, const ChannelNorm* cn, bool silu,
                     int64_t row_width, float* rows) {
  for (int k = 0; k < kPatch; ++k) {
    float* dst = rows + k * row_width;
    const int64_t iy = kOut * ty - 1 + k;
    if (iy < 0 || iy >= H) {
      std::fill(dst, dst + row_width, 0.0f);
      continue;
    }
    dst[0] = 0.0f;
    std::fill(dst + 1 + W, dst + row_width, 0.0f);
    const float* src = plane + iy * W;
    if (cn)
      normalize_span(src, W, *cn, silu, dst + 1);
    else
      std::memcpy(dst + 1, src, static_cast<size_t>(W) * sizeof(float));
  }
}

}  // namespace

bool winograd_takes_weight(int64_t Ci, int64_t Co, int k) {
  return k == 3 && static_cast<size_t>(kFreq) * a_panel_floats(Co, Ci) <= kMaxWeightFloats;
}

bool winograd_takes(int64_t Ci, int64_t Co, int64_t H, int64_t W, int k, int stride, int pad_t, int pad_l, int pad_b,
                    int pad_r) {
  return stride == 1 && pad_t == 1 && pad_l == 1 && pad_b == 1 && pad_r == 1 && H >= kMinSide && W >= kMinSide &&
         winograd_takes_weight(Ci, Co, k);
}

size_t winograd_workspace_floats(int64_t Ci, int64_t Co, int64_t W, int threads) {
  // The most tile rows a group of this width takes, with either vector.
  size_t group_floats = 0;
  for (const int lanes : {kLanes, kWideLanes}) {
    const int64_t tiles_per_row = round_up((W + kOut - 1) / kOut, lanes);
    const GroupBuffers group(tiling(kOut * rows_per_group(tiles_per_row), W, lanes, 1, 1), Ci, Co);
    group_floats = std::max(group_floats, group.floats());
  }
  return static_cast<size_t>(kFreq) * a_panel_floats(Co, Ci) + static_cast<size_t>(threads) * group_floats;
}

void winograd_convolve(const float* x, int64_t N, int64_t Ci, int64_t H, int64_t W, const NormOnRead* norm,
                       const float* w_panels, const float* b, int64_t Co, bool add_to_out, float* out,
                       ScratchPool& scratch, const CpuIsa& isa) {
  const Tiling t = tiling(H, W, transform_lanes(W, isa), N, omp_get_max_threads());
  const bool wide = t.lanes == kWideLanes;
  const ScratchPool::Lease U = scratch.take(static_cast<size_t>(kFreq) * a_panel_floats(Co, Ci));
  transform_weights(w_panels, Ci, Co, U.data());
  const size_t u_freq = a_panel_floats(Co, Ci);
  const int64_t work = N * t.groups;
#pragma omp parallel
  {
    GroupBuffers buf(t, Ci, Co);
    buf.take(scratch);
    const GroupRows& g = buf.rows;
#pragma omp for schedule(dynamic)
    for (int64_t item = 0; item < work; ++item) {
      const int64_t n = item / t.groups, ty0 = (item % t.groups) * t.rows_per_group;
      const int64_t rows = std::min(t.rows_per_group, t.th - ty0), tiles = rows * t.tiles_per_row;
      const float* xn = x + n * Ci * H * W;
      for (int64_t ci = 0; ci < Ci; ++ci) {
        const ChannelNorm cn = norm ? channel_norm(*norm, n, Ci, ci) : ChannelNorm{};
        for (int64_t r = 0; r < rows; ++r) {
          read_patch_rows(xn + ci * H * W, H, W, ty0 + r, norm ? &cn : nullptr, norm && norm->silu, t.row_width,
                          g.patch);
          if (wide)
            winograd::transform_input_row_avx512(g, t, r, Ci, ci);
          else
            winograd::transform_input_row<NarrowLanes>(g, t, r, Ci, ci);
        }
      }
      for (int f = 0; f < kFreq; ++f)
        multiply_panels(AOperand{U.data() + f * u_freq, 0, true}, BOperand::panels(g.columns + f * g.column_freq, Ci),
                        Co, tiles, Ci, ProductOutput{g.products + f * g.product_freq, t.padded_tiles, false, nullptr, false},
                        isa);
      for (int64_t r = 0; r < rows; ++r) {
        float* out_n = out + n * Co * H * W;
        if (wide)
          winograd::transform_output_row_avx512(g, t, H, W, ty0, r, Co, b, add_to_out, out_n);
        else
          winograd::transform_output_row<NarrowLanes>(g, t, H, W, ty0, r, Co, b, add_to_out, out_n);
      }
    }
  }
}

}  // namespace varps::cpu
