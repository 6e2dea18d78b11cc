#pragma once
// The transforms of a Winograd convolution's tile rows (cpu/winograd.hpp),
// written once over a vector of L::kWidth tiles: cpu/winograd.cpp runs them
// 8 tiles at a time (AVX2, or portable), cpu/winograd_avx512.cpp 16 at a
// time. Every lane goes through the same operations in the same order (the
// build contracts none into FMAs), so both give the same bits.
//
// A file that includes this defines VARPS_WINOGRAD_TARGET first: the target
// attribute its lanes' intrinsics need (empty where the build's own flags
// suffice). The templates have internal linkage, so each file compiles its
// own copy under its own target, and nothing compiled for AVX-512 can stand
// in for what another file calls.
#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace varps::cpu {

namespace winograd {

constexpr int kOut = 4;     // output pixels per block side
constexpr int kPatch = 6;   // input pixels per patch side
constexpr int kFreq = 36;   // kPatch²

// The blocks ("tiles") of a map: th rows of tw, each row padded to whole
// vectors (tiles_per_row, a multiple of the lanes), so that a vector of
// tiles of one row is transformed together; a group takes `rows_per_group`
// tile rows of one image at a time, whose 36 products are then wide enough
// for the register tile. Tile (r, tx) of a group is column
// r·tiles_per_row + tx of its products.
struct Tiling {
  int lanes = 8;
  int64_t th = 0, tw = 0, tiles_per_row = 0, rows_per_group = 0, groups = 0, padded_tiles = 0, row_width = 0;
};

// The rows a group's transforms work in: the 6 input rows of a tile row
// (column −1 first, zero outside the map), their transform along y, the
// transformed inputs (36 sets of B panels of `column_freq` floats each) and
// the 36 products ([Co][padded_tiles] each, `product_freq` floats apart).
struct GroupRows {
  float* patch = nullptr;
  float* rows = nullptr;
  float* columns = nullptr;
  size_t column_freq = 0;
  float* products = nullptr;
  size_t product_freq = 0;
};

// transform_input_row() and transform_output_row() for 16 tiles at a time
// (cpu/winograd_avx512.cpp): only where the processor has AVX-512, and
// only for a tiling of 16 lanes.
void transform_input_row_avx512(const GroupRows& g, const Tiling& t, int64_t r, int64_t Ci, int64_t ci);
void transform_output_row_avx512(const GroupRows& g, const Tiling& t, int64_t H, int64_t W, int64_t ty0, int64_t r,
                                 int64_t Co, const float* b, bool add_to_out, float* out_n);

namespace {

// The 1-D transforms: Bᵀ·d (input) and Aᵀ·m (output), lane-wise.
template <typename V>
VARPS_WINOGRAD_TARGET inline void input_transform_1d(const V d[kPatch], V v[kPatch]) {
  v[0] = (d[0] * 4.0f - d[2] * 5.0f) + d[4];
  v[1] = (d[3] + d[4]) - (d[1] + d[2]) * 4.0f;
  v[2] = (d[4] - d[3]) + (d[1] - d[2]) * 4.0f;
  v[3] = (d[4] - d[2]) + (d[3] - d[1]) * 2.0f;
  v[4] = (d[4] - d[2]) - (d[3] - d[1]) * 2.0f;
  v[5] = (d[1] * 4.0f - d[3] * 5.0f) + d[5];
}

template <typename V>
VARPS_WINOGRAD_TARGET inline void output_transform_1d(const V m[kPatch], V y[kOut]) {
  const V s12 = m[1] + m[2], d12 = m[1] - m[2], s34 = m[3] + m[4], d34 = m[3] - m[4];
  y[0] = (m[0] + s12) + s34;
  y[1] = d12 + d34 * 2.0f;
  y[2] = s12 + s34 * 4.0f;
  y[3] = (d12 + d34 * 8.0f) + m[5];
}

// V_ξ[ci, tile] = (Bᵀ·d·B)_ξ for the tiles of the group's tile row r and
// channel ci, from its patch rows into the group's B panels: Bᵀ along y
// over whole rows, then along x a vector of tiles at a time. L gives the
// vector type V of L::kWidth floats and its moves: load, store,
// deinterleave4 (p[m][q] = x[4q + m]), interleave4 (its inverse) and
// next_tile (lanes 1… of v, then a float).
template <class L>
VARPS_WINOGRAD_TARGET void transform_input_row(const GroupRows& g, const Tiling& t, int64_t r, int64_t Ci,
                                               int64_t ci) {
  using V = typename L::V;
  constexpr int kW = L::kWidth;
  constexpr int64_t kPanelCols = 16;
  for (int64_t x = 0; x < t.row_width; x += kW) {
    V d[kPatch], v[kPatch];
    for (int k = 0; k < kPatch; ++k) d[k] = L::load(g.patch + k * t.row_width + x);
    input_transform_1d(d, v);
    for (int i = 0; i < kPatch; ++i) L::store(g.rows + i * t.row_width + x, v[i]);
  }
  for (int64_t tx = 0; tx < t.tiles_per_row; tx += kW) {
    const int64_t col = r * t.tiles_per_row + tx;  // a multiple of kW: the vector lies in one panel
    float* dst = g.columns + ((col / kPanelCols) * Ci + ci) * kPanelCols + col % kPanelCols;
    for (int i = 0; i < kPatch; ++i) {
      const float* z = g.rows + i * t.row_width + kOut * tx;
      V d[kPatch], v[kPatch];
      L::deinterleave4(z, d);
      d[4] = L::next_tile(d[0], z[4 * kW]);
      d[5] = L::next_tile(d[1], z[4 * kW + 1]);
      input_transform_1d(d, v);
      for (int j = 0; j < kPatch; ++j) L::store(dst + (i * kPatch + j) * g.column_freq, v[j]);
    }
  }
}

// The output pixels of the group's tile row r from the 36 products (Aᵀ·m·A),
// plus the bias and what out held.
template <class L>
VARPS_WINOGRAD_TARGET void transform_output_row(const GroupRows& g, const Tiling& t, int64_t H, int64_t W, int64_t ty0,
                                                int64_t r, int64_t Co, const float* b, bool add_to_out,
                                                float* out_n) {
  using V = typename L::V;
  constexpr int kW = L::kWidth;
  const int64_t ld = t.padded_tiles;
  for (int64_t co = 0; co < Co; ++co) {
    float* plane = out_n + co * H * W;
    const V bias = b ? V{} + b[co] : V{};
    for (int64_t tx = 0; tx < t.tiles_per_row; tx += kW) {
      const float* m = g.products + co * ld + r * t.tiles_per_row + tx;
      V s[kOut][kPatch];  // Aᵀ along the rows of m
      for (int j = 0; j < kPatch; ++j) {
        V col[kPatch], y[kOut];
        for (int i = 0; i < kPatch; ++i) col[i] = L::load(m + (i * kPatch + j) * g.product_freq);
        output_transform_1d(col, y);
        for (int a = 0; a < kOut; ++a) s[a][j] = y[a];
      }
      const int64_t x0 = kOut * tx, cols = std::min<int64_t>(kOut * kW, W - x0);
      if (cols <= 0) break;
      for (int a = 0; a < kOut; ++a) {
        const int64_t oy = kOut * (ty0 + r) + a;
        if (oy >= H) break;
        V y[kOut];
        output_transform_1d(s[a], y);
        alignas(64) float px[kOut * kW];
        L::interleave4(y, px);
        float* dst = plane + oy * W + x0;
        int64_t c = 0;
        for (; c + kW <= cols; c += kW) {  // the loop below, a vector at a time
          const V p = L::load(px + c);
          if (add_to_out)
            L::store(dst + c, (b ? L::load(dst + c) + bias : L::load(dst + c)) + p);
          else
            L::store(dst + c, b ? bias + p : p);
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

}  // namespace winograd

}  // namespace varps::cpu
