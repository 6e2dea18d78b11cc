// Image-space ops of the CPU backend (NCHW): convolution, GroupNorm and the
// PyTorch resampling modes the tokenizer uses.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "cpu/bf16_panels.hpp"
#include "cpu/channel_norm.hpp"
#include "cpu/cpu_backend.hpp"
#include "cpu/gemm_kernel.hpp"
#include "cpu/group_stats.hpp"
#include "cpu/panel_gemm.hpp"
#include "cpu/vector_math.hpp"
#include "cpu/winograd.hpp"
#include "ops/resample.hpp"
#include "varps/error.hpp"

namespace varps {

namespace {
constexpr int64_t kIm2colBandFloats = int64_t{4} << 20;
}  // namespace

uint64_t CpuBackend::workspace_bytes(const WorkspaceDemand& demand) const {
  // One band of columns at a time (a 1×1 convolution's too), allocated per
  // convolution, and for a normalized_conv2d the normalised input rows of
  // the band, which hold each value once where the band holds it k·k
  // times: at most a band more. Each thread packs its block of a product's
  // activations beside them.
  // A Winograd convolution holds its transformed weights and each thread's
  // group of tiles instead.
  const uint64_t band = std::min<uint64_t>(std::max(demand.im2col, demand.pointwise_input), kIm2colBandFloats);
  uint64_t floats = 2 * band + static_cast<uint64_t>(threads_) * cpu::product_scratch_floats();
  for (const ConvolutionShape& c : demand.convolutions)
    if (cpu::winograd_takes(c.ci, c.co, c.side, c.side, static_cast<int>(c.k), 1, 1, 1, 1, 1))
      floats = std::max<uint64_t>(floats, cpu::winograd_workspace_floats(c.ci, c.co, c.side, threads_));
  // A bf16 or int8 product holds its x packed whole (a float per element in
  // the FMA tile's bf16 form, a byte for int8), its rows and depth rounded
  // up to the panels: at most 6 rows of the widest depth (16 Ki) more.
  // In the reduced precisions a bf16 convolution holds its band rounded to
  // word pairs beside it: half a band more.
  if (products_ != cpu::PackedMatrix::Element::F32) floats += band / 2 + 16 * 4096;
  const uint64_t padded_input = demand.linear_input + 6 * (uint64_t{1} << 14);
  if (products_ == cpu::PackedMatrix::Element::Bf16) floats += padded_input;
  if (products_ == cpu::PackedMatrix::Element::Int8) floats += padded_input / 4 + padded_input / 6;
  return floats * sizeof(float);
}

namespace {
using cpu::GroupStats;
using cpu::group_stats;
}  // namespace

// out[n] = (add_to_out ? out[n] : 0) + b + w · columns(x[n]), the columns
// im2col'd band by band straight into B panels (cpu/panel_gemm.hpp),
// normalised on the way when `norm` is given.
void CpuBackend::convolve(const float* x, int64_t N, int64_t Ci, int64_t H, int64_t W, const NormOnRead* norm,
                          const float* w, const float* b, int64_t Co, int k, int stride, int pad_t, int pad_l,
                          int pad_b, int pad_r, bool add_to_out, float* out) {
  const int64_t Ho = (H + pad_t + pad_b - k) / stride + 1;
  const int64_t Wo = (W + pad_l + pad_r - k) / stride + 1;
  const int64_t P = Ho * Wo;
  const int64_t Kdim = Ci * k * k;
  // A weight kept in bf16 (cpu_memory.cpp says which) multiplies the
  // columns rounded to bf16 too.
  const std::optional<cpu::PackedMatrix> kept = packed_->find(w);
  const bool bf16 = kept && kept->element == cpu::PackedMatrix::Element::Bf16;
  if (bf16 && (kept->role != cpu::PackedMatrix::Role::A || kept->rows != Co || kept->depth != Kdim))
    throw Error("a bf16 convolution weight of " + std::to_string(kept->rows) + "x" + std::to_string(kept->depth) +
                " used as one of " + std::to_string(Co) + "x" + std::to_string(Kdim));
  cpu::ScratchPool::Lease weight_scratch;
  const float* a = bf16 ? w : panels_of(w, Co, Kdim, true, weight_scratch);
  if (!bf16 && cpu::winograd_takes(Ci, Co, H, W, k, stride, pad_t, pad_l, pad_b, pad_r)) {
    cpu::winograd_convolve(x, N, Ci, H, W, norm, a, b, Co, add_to_out, out, *scratch_, isa_);
    return;
  }
  // Bands of output rows keep the columns near 16 MB (the 256x256x160
  // decoder level would need 377 MB at once).
  const int64_t max_cols = std::max<int64_t>(Wo, kIm2colBandFloats / std::max<int64_t>(Kdim, 1));
  const int64_t band_rows = std::max<int64_t>(1, std::min<int64_t>(Ho, max_cols / Wo));
  const cpu::ScratchPool::Lease band = scratch_->take(cpu::b_panel_floats(band_rows * Wo, Kdim));
  const cpu::ScratchPool::Lease band_words = scratch_->take(bf16 ? cpu::bf16_b_panel_words(band_rows * Wo, Kdim) : 0);
  // With a norm, the input rows a band reads are normalised once into
  // `normed` (each feeds k·k columns; normalising per column would repeat
  // the SiLU k·k times).
  const cpu::ScratchPool::Lease normed =
      scratch_->take(norm ? static_cast<size_t>(Ci * std::min<int64_t>(H, (band_rows - 1) * stride + k) * W) : 0);
  for (int64_t n = 0; n < N; ++n) {
    const float* xn = x + n * Ci * H * W;
    float* on = out + n * Co * P;
    if (b) {
      for (int64_t co = 0; co < Co; ++co) {
        float* plane = on + co * P;
        if (add_to_out)
          for (int64_t p = 0; p < P; ++p) plane[p] += b[co];
        else
          std::fill(plane, plane + P, b[co]);
      }
    }
    const bool accumulate = b || add_to_out;
    for (int64_t oy0 = 0; oy0 < Ho; oy0 += band_rows) {
      const int64_t rows = std::min(band_rows, Ho - oy0);
      const int64_t cols = rows * Wo;
      // Input rows [iy_lo, iy_hi) of every channel are read from xn, or from normed.
      const int64_t iy_lo = std::max<int64_t>(0, oy0 * stride - pad_t);
      const int64_t iy_hi = std::min<int64_t>(H, (oy0 + rows - 1) * stride - pad_t + k);
      const int64_t in_rows = std::max<int64_t>(iy_hi - iy_lo, 0);
      if (norm) {
#pragma omp parallel for schedule(static)
        for (int64_t ci = 0; ci < Ci; ++ci) {
          const cpu::ChannelNorm cn = cpu::channel_norm(*norm, n, Ci, ci);
          const float* s = xn + (ci * H + iy_lo) * W;
          float* d = normed.data() + ci * in_rows * W;
          for (int64_t i = 0; i < in_rows * W; ++i) d[i] = cn(s[i]);
          if (norm->silu) cpu::silu_span(d, d, static_cast<size_t>(in_rows * W));
        }
      }
      // Column q of the band is lane q % 16 of panel q / 16; the lanes past
      // the last column stay zero.
      const int64_t panels = (cols + cpu::kTileCols - 1) / cpu::kTileCols;
      std::fill(band.data() + (panels - 1) * Kdim * cpu::kTileCols, band.data() + panels * Kdim * cpu::kTileCols,
                0.0f);
#pragma omp parallel for collapse(2) schedule(static)
      for (int64_t ci = 0; ci < Ci; ++ci)
        for (int64_t kk = 0; kk < k * k; ++kk) {
          const int64_t ky = kk / k, kx = kk % k, row = ci * k * k + kk;
          float* dst = band.data() + row * cpu::kTileCols;
          // Row iy of this channel is src + (iy − first_row)·W.
          const float* src = norm ? normed.data() + ci * in_rows * W : xn + ci * H * W;
          const int64_t first_row = norm ? iy_lo : 0;
          for (int64_t oy = 0; oy < rows; ++oy) {
            const int64_t iy = (oy0 + oy) * stride + ky - pad_t;
            const float* s = (iy < 0 || iy >= H) ? nullptr : src + (iy - first_row) * W;
            for (int64_t ox = 0; ox < Wo; ++ox) {
              const int64_t q = oy * Wo + ox, ix = ox * stride + kx - pad_l;
              dst[(q / cpu::kTileCols) * Kdim * cpu::kTileCols + q % cpu::kTileCols] =
                  (s && ix >= 0 && ix < W) ? s[ix] : 0.0f;
            }
          }
        }
      const cpu::ProductOutput into{on + oy0 * Wo, P, accumulate, nullptr, false};
      if (bf16) {
        uint32_t* words = reinterpret_cast<uint32_t*>(band_words.data());
        cpu::pack_bf16_b_panels_from_float_panels(band.data(), cols, Kdim, words);
        cpu::multiply_bf16_prepacked(a, words, Co, cols, Kdim, into, isa_);
      } else {
        cpu::multiply_panels(cpu::AOperand{a, 0, true}, cpu::BOperand::panels(band.data(), Kdim), Co, cols, Kdim, into,
                             isa_);
      }
    }
  }
}

void CpuBackend::do_conv2d(const float* x, int64_t N, int64_t Ci, int64_t H, int64_t W, const float* w, const float* b,
                        int64_t Co, int k, int stride, int pad_t, int pad_l, int pad_b, int pad_r, float* out) {
  convolve(x, N, Ci, H, W, nullptr, w, b, Co, k, stride, pad_t, pad_l, pad_b, pad_r, false, out);
}

void CpuBackend::do_normalized_conv2d(const float* x, int64_t N, int64_t Ci, int64_t H, int64_t W,
                                   const NormOnRead& norm, const float* w, const float* b, int64_t Co, int k,
                                   bool add_to_out, float* out) {
  VARPS_CHECK(k % 2 == 1 && norm.groups > 0 && Ci % norm.groups == 0, "normalized_conv2d: odd k, whole groups");
  convolve(x, N, Ci, H, W, &norm, w, b, Co, k, 1, k / 2, k / 2, k / 2, k / 2, add_to_out, out);
}

void CpuBackend::do_group_norm_stats(const float* x, int64_t N, int64_t C, int64_t HW, int groups, float eps,
                                  float* stats) {
  const int64_t cpg = C / groups;
#pragma omp parallel for collapse(2) schedule(dynamic)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t g = 0; g < groups; ++g) {
      const GroupStats st = group_stats(x + (n * C + g * cpg) * HW, cpg * HW, eps);
      stats[(n * groups + g) * 2] = st.mean;
      stats[(n * groups + g) * 2 + 1] = st.rstd;
    }
}

void CpuBackend::do_group_norm(const float* x, int64_t N, int64_t C, int64_t HW, int groups, const float* gamma,
                            const float* beta, float eps, bool then_silu, float* out) {
  const int64_t cpg = C / groups;
#pragma omp parallel for collapse(2) schedule(dynamic)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t g = 0; g < groups; ++g) {
      const float* xs = x + (n * C + g * cpg) * HW;
      float* os = out + (n * C + g * cpg) * HW;
      const GroupStats st = group_stats(xs, cpg * HW, eps);
      for (int64_t c = 0; c < cpg; ++c) {
        const cpu::ChannelNorm cn{st.mean, ops::group_norm_scale(gamma[g * cpg + c], st.rstd), beta[g * cpg + c]};
        const float* xc = xs + c * HW;
        float* oc = os + c * HW;
        for (int64_t i = 0; i < HW; ++i) oc[i] = cn(xc[i]);
        if (then_silu) cpu::silu_span(oc, oc, static_cast<size_t>(HW));
      }
    }
}

void CpuBackend::do_upsample_nearest2x(const float* x, int64_t NC, int64_t H, int64_t W, float* out) {
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < NC; ++c)
    for (int64_t y = 0; y < 2 * H; ++y) {
      const float* s = x + (c * H + y / 2) * W;
      float* d = out + (c * 2 * H + y) * 2 * W;
      for (int64_t xx = 0; xx < 2 * W; ++xx) d[xx] = s[xx / 2];
    }
}

void CpuBackend::do_upsample_bicubic(const float* x, int64_t NC, int64_t h, int64_t w, int64_t H, int64_t W,
                                  float* out) {
  std::vector<ops::CubicTaps> ty(static_cast<size_t>(H)), tx(static_cast<size_t>(W));
  for (int64_t o = 0; o < H; ++o) ty[o] = ops::cubic_taps(h, H, o);
  for (int64_t o = 0; o < W; ++o) tx[o] = ops::cubic_taps(w, W, o);
#pragma omp parallel for schedule(static) if (NC * H * W > 16384)
  for (int64_t c = 0; c < NC; ++c) {
    const float* src = x + c * h * w;
    for (int64_t oy = 0; oy < H; ++oy)
      for (int64_t ox = 0; ox < W; ++ox) out[(c * H + oy) * W + ox] = ops::bicubic_sum(src, w, ty[oy], tx[ox]);
  }
}

void CpuBackend::do_downsample_area(const float* x, int64_t NC, int64_t H, int64_t W, int64_t h, int64_t w,
                                 float* out) {
  for (int64_t c = 0; c < NC; ++c)
    for (int64_t oy = 0; oy < h; ++oy)
      for (int64_t ox = 0; ox < w; ++ox) out[(c * h + oy) * w + ox] = ops::area_pixel(x + c * H * W, H, W, h, w, oy, ox);
}

void CpuBackend::do_nearest_code(const float* z, int64_t n, const float* codebook, int64_t V, int64_t C, int32_t* idx) {
  std::vector<float> e2(static_cast<size_t>(V));
  for (int64_t v = 0; v < V; ++v) {
    float s = 0.0f;
    for (int64_t c = 0; c < C; ++c) s += codebook[v * C + c] * codebook[v * C + c];
    e2[v] = s;
  }
  std::vector<float> dots(static_cast<size_t>(n * V));
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n), static_cast<int>(V), static_cast<int>(C),
              1.0f, z, static_cast<int>(C), codebook, static_cast<int>(C), 0.0f, dots.data(), static_cast<int>(V));
#pragma omp parallel for schedule(static) if (n * V > 65536)
  for (int64_t i = 0; i < n; ++i) {
    float z2 = 0.0f;
    for (int64_t c = 0; c < C; ++c) z2 += z[i * C + c] * z[i * C + c];
    float best = std::numeric_limits<float>::infinity();
    int32_t arg = 0;
    for (int64_t v = 0; v < V; ++v) {
      const float d = (z2 + e2[v]) - 2.0f * dots[i * V + v];
      if (d < best) {
        best = d;
        arg = static_cast<int32_t>(v);
      }
    }
    idx[i] = arg;
  }
}

}  // namespace varps
