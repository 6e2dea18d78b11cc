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

#if VARPS_CPU_AVX2
#include <immintrin.h>
#endif

namespace varps::cpu {

namespace {

constexpr int kOut = 4;     // output pixels per block side
constexpr int kPatch = 6;   // input pixels per patch side
constexpr int kFreq = 36;   // kPatch²
constexpr int kLanes = 8;   // tiles transformed together (one AVX2 vector)
constexpr int64_t kBlockTiles = 64;
constexpr size_t kMaxWeightFloats = size_t{4} << 20;
// Smaller maps have too few tiles to pay for the transforms, and keeping
// them direct keeps the latent-sized convolutions of the residual path
// (Phi, whose error f_hat accumulates over the scales) at the direct sum's
// accuracy.
constexpr int64_t kMinSide = 32;

// The blocks ("tiles") of a map: th rows of tw, each row padded to whole
// vectors (tw8 lanes) so that kLanes tiles of one row are transformed
// together; a thread takes `rows_per_group` tile rows of one image at a
// time, about kBlockTiles tiles, whose 36 products are then wide enough
// for the register tile. Tile (r, tx) of a group is column r·tw8 + tx of
// its products.
struct Tiling {
  int64_t th = 0, tw = 0, tw8 = 0, rows_per_group = 0, groups = 0, padded_tiles = 0, row_width = 0;
};

int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// Tile rows a group takes on a map with tw8 padded tiles per row (at most).
int64_t rows_per_group(int64_t tw8) { return std::max<int64_t>(1, kBlockTiles / tw8); }

// With `images` images and `threads` threads; a small map's rows are split
// into as many groups as there are threads (else one thread would take a
// 32×32 map alone).
Tiling tiling(int64_t H, int64_t W, int64_t images, int threads) {
  Tiling t;
  t.th = (H + kOut - 1) / kOut;
  t.tw = (W + kOut - 1) / kOut;
  t.tw8 = round_up(t.tw, kLanes);
  const int64_t groups_per_image = (threads + images - 1) / images;
  t.rows_per_group = std::min({t.th, rows_per_group(t.tw8), std::max<int64_t>(1, t.th / groups_per_image)});
  t.groups = (t.th + t.rows_per_group - 1) / t.rows_per_group;
  t.padded_tiles = round_up(t.rows_per_group * t.tw8, kTileCols);
  // Input columns −1 … 4·tw8 + 6: a vector of tiles reads 4·kLanes + 2
  // columns from its first, and whole vectors.
  t.row_width = kOut * t.tw8 + kLanes;
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

#if !VARPS_CPU_AVX2
// Without AVX, GCC warns that returning a v8 by value has another ABI than
// with AVX (the portable helpers take it by reference for the same reason);
// these functions are internal to this file, so no call crosses that ABI.
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

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

// The 1-D transforms: Bᵀ·d (input) and Aᵀ·m (output), lane-wise.
template <typename T>
inline void input_transform_1d(const T d[kPatch], T v[kPatch]) {
  v[0] = (d[0] * 4.0f - d[2] * 5.0f) + d[4];
  v[1] = (d[3] + d[4]) - (d[1] + d[2]) * 4.0f;
  v[2] = (d[4] - d[3]) + (d[1] - d[2]) * 4.0f;
  v[3] = (d[4] - d[2]) + (d[3] - d[1]) * 2.0f;
  v[4] = (d[4] - d[2]) - (d[3] - d[1]) * 2.0f;
  v[5] = (d[1] * 4.0f - d[3] * 5.0f) + d[5];
}

template <typename T>
inline void output_transform_1d(const T m[kPatch], T y[kOut]) {
  const T s12 = m[1] + m[2], d12 = m[1] - m[2], s34 = m[3] + m[4], d34 = m[3] - m[4];
  y[0] = (m[0] + s12) + s34;
  y[1] = d12 + d34 * 2.0f;
  y[2] = s12 + s34 * 4.0f;
  y[3] = (d12 + d34 * 8.0f) + m[5];
}

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

// A thread's buffers for one group of tiles: the input rows of a tile row,
// their transform along y, the transformed inputs and the 36 products.
struct GroupBuffers {
  size_t patch_floats = 0, rows_floats = 0, columns_floats = 0, products_floats = 0;
  float *patch = nullptr, *rows = nullptr, *columns = nullptr, *products = nullptr;
  ScratchPool::Lease lease;

  GroupBuffers(const Tiling& t, int64_t Ci, int64_t Co) {
    patch_floats = static_cast<size_t>(kPatch * t.row_width);
    rows_floats = static_cast<size_t>(kPatch * t.row_width);
    columns_floats = static_cast<size_t>(kFreq) * b_panel_floats(t.padded_tiles, Ci);
    products_floats = static_cast<size_t>(kFreq * Co * t.padded_tiles);
  }
  size_t floats() const { return patch_floats + rows_floats + columns_floats + products_floats; }
  // The transformed inputs' padding lanes are multiplied too (their
  // products are not read): zero, not whatever the pool's memory held.
  void take(ScratchPool& pool) {
    lease = pool.take(floats());
    patch = lease.data();
    rows = patch + patch_floats;
    columns = rows + rows_floats;
    products = columns + columns_floats;
    std::fill(columns, columns + columns_floats, 0.0f);
  }
};

// Rows of input channel ci that tile row ty reads (4ty − 1 … 4ty + 4),
// normalised when asked, column −1 first, zero outside the map.
void read_patch_rows(const float* plane, int64_t H, int64_t W, int64_t ty, const ChannelNorm* cn, bool silu,
                     int64_t row_width, float* rows) {
  for (int k = 0; k < kPatch; ++k) {
    float* dst = rows + k * row_width;
    std::fill(dst, dst + row_width, 0.0f);
    const int64_t iy = kOut * ty - 1 + k;
    if (iy < 0 || iy >= H) continue;
    const float* src = plane + iy * W;
    if (cn) {
      for (int64_t x = 0; x < W; ++x) dst[1 + x] = (*cn)(src[x]);
      if (silu) silu_span(dst + 1, dst + 1, static_cast<size_t>(W));
    } else {
      std::memcpy(dst + 1, src, static_cast<size_t>(W) * sizeof(float));
    }
  }
}

// V_ξ[ci, tile] = (Bᵀ·d·B)_ξ for the tiles of tile row ty0 + r and channel
// ci, into the group's B panels: Bᵀ along y over whole rows, then along x
// a vector of tiles at a time.
void transform_input_row(const float* plane, int64_t H, int64_t W, const Tiling& t, int64_t ty0, int64_t r,
                         int64_t Ci, int64_t ci, const ChannelNorm* cn, bool silu, GroupBuffers& buf) {
  read_patch_rows(plane, H, W, ty0 + r, cn, silu, t.row_width, buf.patch);
  for (int64_t x = 0; x < t.row_width; x += kLanes) {
    v8 d[kPatch], v[kPatch];
    for (int k = 0; k < kPatch; ++k) d[k] = load8(buf.patch + k * t.row_width + x);
    input_transform_1d(d, v);
    for (int i = 0; i < kPatch; ++i) store8(buf.rows + i * t.row_width + x, v[i]);
  }
  const size_t per_freq = b_panel_floats(t.padded_tiles, Ci);
  for (int64_t tx = 0; tx < t.tw8; tx += kLanes) {
    const int64_t col = r * t.tw8 + tx;  // a multiple of kLanes: the vector lies in one panel
    float* dst = buf.columns + ((col / kTileCols) * Ci + ci) * kTileCols + col % kTileCols;
    for (int i = 0; i < kPatch; ++i) {
      const float* z = buf.rows + i * t.row_width + kOut * tx;
      v8 d[kPatch], v[kPatch];
      deinterleave4(z, d);
      d[4] = next_tile(d[0], z[4 * kLanes]);
      d[5] = next_tile(d[1], z[4 * kLanes + 1]);
      input_transform_1d(d, v);
      for (int j = 0; j < kPatch; ++j) store8(dst + (i * kPatch + j) * per_freq, v[j]);
    }
  }
}

// The output pixels of the group's tile row r from the 36 products (Aᵀ·m·A),
// plus the bias and what out held.
void transform_output_row(const GroupBuffers& buf, const Tiling& t, int64_t H, int64_t W, int64_t ty0, int64_t r,
                          int64_t Co, const float* b, bool add_to_out, float* out_n) {
  const int64_t ld = t.padded_tiles, per_freq = Co * ld;
  for (int64_t co = 0; co < Co; ++co) {
    float* plane = out_n + co * H * W;
    const v8 bias = b ? v8{} + b[co] : v8{};
    for (int64_t tx = 0; tx < t.tw8; tx += kLanes) {
      const float* m = buf.products + co * ld + r * t.tw8 + tx;
      v8 s[kOut][kPatch];  // Aᵀ along the rows of m
      for (int j = 0; j < kPatch; ++j) {
        v8 col[kPatch], y[kOut];
        for (int i = 0; i < kPatch; ++i) col[i] = load8(m + (i * kPatch + j) * per_freq);
        output_transform_1d(col, y);
        for (int a = 0; a < kOut; ++a) s[a][j] = y[a];
      }
      const int64_t x0 = kOut * tx, cols = std::min<int64_t>(kOut * kLanes, W - x0);
      if (cols <= 0) break;
      for (int a = 0; a < kOut; ++a) {
        const int64_t oy = kOut * (ty0 + r) + a;
        if (oy >= H) break;
        v8 y[kOut];
        output_transform_1d(s[a], y);
        alignas(32) float px[kOut * kLanes];
        interleave4(y, px);
        float* dst = plane + oy * W + x0;
        int64_t c = 0;
        for (; c + kLanes <= cols; c += kLanes) {  // the loop below, a vector at a time
          const v8 p = load8(px + c);
          if (add_to_out)
            store8(dst + c, (b ? load8(dst + c) + bias : load8(dst + c)) + p);
          else
            store8(dst + c, b ? bias + p : p);
        }
        for (; c < cols; ++c) {
          if (add_to_out)
            dst[c] = (b ? dst[c] + bias[0] : dst[c]) + px[c];
          else
            dst[c] = b ? bias[0] + px[c] : px[c];
        }
      }
    }
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
  // The most tile rows a group of this width takes.
  const GroupBuffers group(tiling(kOut * rows_per_group(round_up((W + kOut - 1) / kOut, kLanes)), W, 1, 1), Ci, Co);
  return static_cast<size_t>(kFreq) * a_panel_floats(Co, Ci) + static_cast<size_t>(threads) * group.floats();
}

void winograd_convolve(const float* x, int64_t N, int64_t Ci, int64_t H, int64_t W, const NormOnRead* norm,
                       const float* w_panels, const float* b, int64_t Co, bool add_to_out, float* out,
                       ScratchPool& scratch, const CpuIsa& isa) {
  const Tiling t = tiling(H, W, N, omp_get_max_threads());
  const ScratchPool::Lease U = scratch.take(static_cast<size_t>(kFreq) * a_panel_floats(Co, Ci));
  transform_weights(w_panels, Ci, Co, U.data());
  const size_t u_freq = a_panel_floats(Co, Ci), v_freq = b_panel_floats(t.padded_tiles, Ci);
  const int64_t work = N * t.groups;
#pragma omp parallel
  {
    GroupBuffers buf(t, Ci, Co);
    buf.take(scratch);
#pragma omp for schedule(dynamic)
    for (int64_t item = 0; item < work; ++item) {
      const int64_t n = item / t.groups, ty0 = (item % t.groups) * t.rows_per_group;
      const int64_t rows = std::min(t.rows_per_group, t.th - ty0), tiles = rows * t.tw8;
      const float* xn = x + n * Ci * H * W;
      for (int64_t ci = 0; ci < Ci; ++ci) {
        const ChannelNorm cn = norm ? channel_norm(*norm, n, Ci, ci) : ChannelNorm{};
        for (int64_t r = 0; r < rows; ++r)
          transform_input_row(xn + ci * H * W, H, W, t, ty0, r, Ci, ci, norm ? &cn : nullptr, norm && norm->silu, buf);
      }
      for (int f = 0; f < kFreq; ++f)
        multiply_panels(AOperand{U.data() + f * u_freq, 0, true}, BOperand::panels(buf.columns + f * v_freq, Ci), Co,
                        tiles, Ci,
                        ProductOutput{buf.products + f * Co * t.padded_tiles, t.padded_tiles, false, nullptr, false},
                        isa);
      for (int64_t r = 0; r < rows; ++r) transform_output_row(buf, t, H, W, ty0, r, Co, b, add_to_out, out + n * Co * H * W);
    }
  }
}

}  // namespace varps::cpu
