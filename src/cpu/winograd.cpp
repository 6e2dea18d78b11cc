#include "cpu/winograd.hpp"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu/channel_norm.hpp"
#include "cpu/gemm_kernel.hpp"
#include "cpu/panel_gemm.hpp"
#include "cpu/vector_math.hpp"

namespace varps::cpu {

namespace {

constexpr int kOut = 4;     // output pixels per block side
constexpr int kPatch = 6;   // input pixels per patch side
constexpr int kFreq = 36;   // kPatch²
constexpr int kLanes = 8;   // blocks transformed together (one AVX2 vector each)
constexpr int64_t kBlockTiles = 64;
constexpr size_t kMaxWeightFloats = size_t{4} << 20;
// Smaller maps have too few tiles to pay for the transforms, and keeping
// them direct keeps the latent-sized convolutions of the residual path
// (Phi, whose error f_hat accumulates over the scales) at the direct sum's
// accuracy.
constexpr int64_t kMinSide = 32;

// The blocks ("tiles") of a map: tw per tile row, th rows; a thread takes
// `rows_per_group` tile rows of one image at a time, about kBlockTiles
// tiles, whose 36 products are then wide enough for the register tile.
struct Tiling {
  int64_t th = 0, tw = 0, rows_per_group = 0, groups = 0, group_tiles = 0, padded_tiles = 0, row_width = 0;
};

// Tile rows a group takes on a map with tw tiles per row (at most).
int64_t rows_per_group(int64_t tw) { return std::max<int64_t>(1, kBlockTiles / tw); }

Tiling tiling(int64_t H, int64_t W) {
  Tiling t;
  t.th = (H + kOut - 1) / kOut;
  t.tw = (W + kOut - 1) / kOut;
  t.rows_per_group = std::min(t.th, rows_per_group(t.tw));
  t.groups = (t.th + t.rows_per_group - 1) / t.rows_per_group;
  t.group_tiles = t.rows_per_group * t.tw;
  t.padded_tiles = (t.group_tiles + kTileCols - 1) / kTileCols * kTileCols;
  t.row_width = kOut * t.tw + 2;  // input columns −1 … 4·tw
  return t;
}

// u = G·g·Gᵀ for one 3×3 filter, in double.
void transform_filter(const double g[3][3], double u[kPatch][kPatch]) {
  double t[kPatch][3];
  for (int c = 0; c < 3; ++c) {
    const double g0 = g[0][c], g1 = g[1][c], g2 = g[2][c];
    t[0][c] = g0 / 4;
    t[1][c] = -(g0 + g1 + g2) / 6;
    t[2][c] = -(g0 - g1 + g2) / 6;
    t[3][c] = g0 / 24 + g1 / 12 + g2 / 6;
    t[4][c] = g0 / 24 - g1 / 12 + g2 / 6;
    t[5][c] = g2;
  }
  for (int r = 0; r < kPatch; ++r) {
    const double g0 = t[r][0], g1 = t[r][1], g2 = t[r][2];
    u[r][0] = g0 / 4;
    u[r][1] = -(g0 + g1 + g2) / 6;
    u[r][2] = -(g0 - g1 + g2) / 6;
    u[r][3] = g0 / 24 + g1 / 12 + g2 / 6;
    u[r][4] = g0 / 24 - g1 / 12 + g2 / 6;
    u[r][5] = g2;
  }
}

// U_ξ as A panels of [Co, Ci], ξ = 6·row + column of the transformed filter.
void transform_weights(const float* w_panels, int64_t Ci, int64_t Co, float* U) {
  const size_t per_freq = a_panel_floats(Co, Ci);
  const int64_t Kdim = Ci * 9;
  std::fill(U, U + kFreq * per_freq, 0.0f);
#pragma omp parallel for schedule(static)
  for (int64_t co = 0; co < Co; ++co) {
    const int64_t panel = co / kTileRows, lane = co % kTileRows;
    for (int64_t ci = 0; ci < Ci; ++ci) {
      double g[3][3], u[kPatch][kPatch];
      for (int k = 0; k < 9; ++k) g[k / 3][k % 3] = w_panels[(panel * Kdim + ci * 9 + k) * kTileRows + lane];
      transform_filter(g, u);
      for (int f = 0; f < kFreq; ++f)
        U[f * per_freq + (panel * Ci + ci) * kTileRows + lane] = static_cast<float>(u[f / kPatch][f % kPatch]);
    }
  }
}

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

// A thread's buffers for one group of tiles: the input rows of a tile row,
// their transform along y, the transformed inputs and the 36 products.
struct GroupBuffers {
  size_t patch_floats = 0, rows_floats = 0, columns_floats = 0, products_floats = 0;
  float *patch = nullptr, *rows = nullptr, *columns = nullptr, *products = nullptr;
  ScratchPool::Lease lease;

  GroupBuffers(int64_t tw, int64_t Ci, int64_t Co) {
    const int64_t row_width = kOut * tw + 2, group_rows = rows_per_group(tw);
    const int64_t padded = (group_rows * tw + kTileCols - 1) / kTileCols * kTileCols;
    patch_floats = static_cast<size_t>(kPatch * row_width);
    rows_floats = static_cast<size_t>(group_rows * kPatch * row_width);
    columns_floats = static_cast<size_t>(kFreq) * b_panel_floats(padded, Ci);
    products_floats = static_cast<size_t>(kFreq * Co * padded);
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
// normalised when asked, each padded with a zero column on either side.
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

// V_ξ[ci, tile] = (Bᵀ·d·B)_ξ for every tile of the group and channel ci,
// into the group's B panels.
void transform_input_channel(const float* plane, int64_t H, int64_t W, const Tiling& t, int64_t ty0, int64_t tiles,
                             int64_t Ci, int64_t ci, const ChannelNorm* cn, bool silu, GroupBuffers& buf) {
  const int64_t rows = tiles / t.tw;
  // Bᵀ along y: z[r][i][x] = Σ_k Bᵀ[i][k]·row_k[x], whole rows at a time.
  for (int64_t r = 0; r < rows; ++r) {
    float* patch = buf.patch;
    read_patch_rows(plane, H, W, ty0 + r, cn, silu, t.row_width, patch);
    float* z = buf.rows + r * kPatch * t.row_width;
    const float* d[kPatch];
    for (int k = 0; k < kPatch; ++k) d[k] = patch + k * t.row_width;
    for (int64_t x = 0; x < t.row_width; ++x) {
      const float col[kPatch] = {d[0][x], d[1][x], d[2][x], d[3][x], d[4][x], d[5][x]};
      float v[kPatch];
      input_transform_1d(col, v);
      for (int i = 0; i < kPatch; ++i) z[i * t.row_width + x] = v[i];
    }
  }
  // Bᵀ along x, kLanes tiles at a time: lane q is tile t0 + q.
  const size_t per_freq = b_panel_floats(t.padded_tiles, Ci);
  for (int64_t t0 = 0; t0 < tiles; t0 += kLanes) {
    float d[kPatch][kPatch][kLanes] = {};  // [i][k][q]: z row i at column 4·tx + k
    for (int q = 0; q < kLanes && t0 + q < tiles; ++q) {
      const int64_t r = (t0 + q) / t.tw, tx = (t0 + q) % t.tw;
      const float* z = buf.rows + r * kPatch * t.row_width + kOut * tx;
      for (int i = 0; i < kPatch; ++i)
        for (int k = 0; k < kPatch; ++k) d[i][k][q] = z[i * t.row_width + k];
    }
    float* dst = buf.columns + ((t0 / kTileCols) * Ci + ci) * kTileCols + t0 % kTileCols;
    for (int i = 0; i < kPatch; ++i) {
      float v[kPatch][kLanes];
      for (int q = 0; q < kLanes; ++q) {
        const float col[kPatch] = {d[i][0][q], d[i][1][q], d[i][2][q], d[i][3][q], d[i][4][q], d[i][5][q]};
        float out[kPatch];
        input_transform_1d(col, out);
        for (int j = 0; j < kPatch; ++j) v[j][q] = out[j];
      }
      for (int j = 0; j < kPatch; ++j) std::memcpy(dst + (i * kPatch + j) * per_freq, v[j], sizeof v[j]);
    }
  }
}

// out pixels of the group's tiles from the 36 products: Aᵀ·m·A, then the
// bias and what out held.
void transform_output(const GroupBuffers& buf, const Tiling& t, int64_t H, int64_t W, int64_t ty0, int64_t tiles,
                      int64_t Co, const float* b, bool add_to_out, float* out_n) {
  const int64_t ld = t.padded_tiles, per_freq = Co * ld;
  for (int64_t co = 0; co < Co; ++co) {
    float* plane = out_n + co * H * W;
    const float bias = b ? b[co] : 0.0f;
    for (int64_t t0 = 0; t0 < tiles; t0 += kLanes) {
      float s[kOut][kPatch][kLanes];  // Aᵀ along the rows of m
      for (int j = 0; j < kPatch; ++j)
        for (int q = 0; q < kLanes; ++q) {
          float m[kPatch], y[kOut];
          for (int i = 0; i < kPatch; ++i) m[i] = buf.products[(i * kPatch + j) * per_freq + co * ld + t0 + q];
          output_transform_1d(m, y);
          for (int a = 0; a < kOut; ++a) s[a][j][q] = y[a];
        }
      for (int q = 0; q < kLanes && t0 + q < tiles; ++q) {
        const int64_t r = (t0 + q) / t.tw, tx = (t0 + q) % t.tw;
        for (int a = 0; a < kOut; ++a) {
          const int64_t oy = kOut * (ty0 + r) + a;
          if (oy >= H) break;
          const float row[kPatch] = {s[a][0][q], s[a][1][q], s[a][2][q], s[a][3][q], s[a][4][q], s[a][5][q]};
          float y[kOut];
          output_transform_1d(row, y);
          float* dst = plane + oy * W + kOut * tx;
          for (int c = 0; c < kOut && kOut * tx + c < W; ++c) {
            if (add_to_out)
              dst[c] = (b ? dst[c] + bias : dst[c]) + y[c];
            else
              dst[c] = b ? bias + y[c] : y[c];
          }
        }
      }
    }
  }
}

}  // namespace

bool winograd_takes(int64_t Ci, int64_t Co, int64_t H, int64_t W, int k, int stride, int pad_t, int pad_l, int pad_b,
                    int pad_r) {
  return k == 3 && stride == 1 && pad_t == 1 && pad_l == 1 && pad_b == 1 && pad_r == 1 && H >= kMinSide && W >= kMinSide &&
         static_cast<size_t>(kFreq) * a_panel_floats(Co, Ci) <= kMaxWeightFloats;
}

size_t winograd_workspace_floats(int64_t Ci, int64_t Co, int64_t W, int threads) {
  const GroupBuffers group((W + kOut - 1) / kOut, Ci, Co);
  return static_cast<size_t>(kFreq) * a_panel_floats(Co, Ci) + static_cast<size_t>(threads) * group.floats();
}

void winograd_convolve(const float* x, int64_t N, int64_t Ci, int64_t H, int64_t W, const NormOnRead* norm,
                       const float* w_panels, const float* b, int64_t Co, bool add_to_out, float* out,
                       ScratchPool& scratch) {
  const Tiling t = tiling(H, W);
  const ScratchPool::Lease U = scratch.take(static_cast<size_t>(kFreq) * a_panel_floats(Co, Ci));
  transform_weights(w_panels, Ci, Co, U.data());
  const size_t u_freq = a_panel_floats(Co, Ci), v_freq = b_panel_floats(t.padded_tiles, Ci);
  const int64_t work = N * t.groups;
#pragma omp parallel
  {
    GroupBuffers buf(t.tw, Ci, Co);
    buf.take(scratch);
#pragma omp for schedule(dynamic)
    for (int64_t item = 0; item < work; ++item) {
      const int64_t n = item / t.groups, ty0 = (item % t.groups) * t.rows_per_group;
      const int64_t tiles = std::min(t.rows_per_group, t.th - ty0) * t.tw;
      const float* xn = x + n * Ci * H * W;
      for (int64_t ci = 0; ci < Ci; ++ci) {
        const ChannelNorm cn = norm ? channel_norm(*norm, n, Ci, ci) : ChannelNorm{};
        transform_input_channel(xn + ci * H * W, H, W, t, ty0, tiles, Ci, ci, norm ? &cn : nullptr,
                                norm && norm->silu, buf);
      }
      for (int f = 0; f < kFreq; ++f)
        multiply_panels(AOperand{U.data() + f * u_freq, 0, true}, BOperand::panels(buf.columns + f * v_freq, Ci), Co, tiles, Ci,
                        ProductOutput{buf.products + f * Co * t.padded_tiles, t.padded_tiles, false, nullptr,
                                      false});
      transform_output(buf, t, H, W, ty0, tiles, Co, b, add_to_out, out + n * Co * H * W);
    }
  }
}

}  // namespace varps::cpu
