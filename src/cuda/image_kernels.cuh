#pragma once
// The kernels of the CUDA backend's image ops (cuda_image.cu launches
// them), NCHW: the bias planes and im2col bands of the float32 convolution,
// GroupNorm, nearest upsampling, the PyTorch resampling modes and the
// codebook search. They follow the CPU reference (src/cpu/cpu_image.cpp):
// the resampling kernels compute the same per-pixel formulas
// (ops/resample.hpp) and match it bit for bit; GroupNorm's statistics are
// accumulated in double as there. A header so that a host compiler can
// build them too: the tests run them on the CPU through
// tests/cuda/kernel_emulator.hpp.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "backend.hpp"
#include "cuda/block_reduce.cuh"
#include "cuda/group_norm_math.cuh"
#include "ops/resample.hpp"
#include "cuda/storage_types.cuh"

namespace varps::cuda::image {
// Internal linkage, as kernels private to their launching file: the tests
// build their own copies.
namespace {

constexpr unsigned kThreads = 256;
// One block streams a whole GroupNorm group, so it gets as many loads in
// flight as a block can hold.
constexpr unsigned kNormThreads = 1024;
constexpr unsigned kMaxGridY = 65535;

// Calls launch(uint32_t{}) when every flat index below n, and one
// grid-stride step past it (grid_for caps the grid at 2^28 threads), fits
// in 32 bits, else launch(uint64_t{}): the kernels split flat indices into
// coordinates, and 64-bit division costs several times as much.
template <typename F>
void with_index_type(int64_t n, F&& launch) {
  if (n < (int64_t{1} << 31))
    launch(uint32_t{});
  else
    launch(uint64_t{});
}

template <typename I>
__device__ inline I first_index() {
  return static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x;
}

template <typename I>
__device__ inline I grid_step() {
  return static_cast<I>(gridDim.x) * blockDim.x;
}

inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// ---- convolution ----

// out[plane, :P] = b[plane % Co] (0 without a bias), or += it with kAdd,
// before the products accumulate into it with beta = 1.
template <bool kAdd, typename I>
__global__ void fill_planes_kernel(float* out, int64_t planes, int64_t Co, I P, const float* b) {
  for (int64_t pl = blockIdx.y; pl < planes; pl += gridDim.y) {
    const float v = b ? b[pl % Co] : 0.0f;
    float* dst = out + pl * static_cast<int64_t>(P);
    for (I p = first_index<I>(); p < P; p += grid_step<I>()) dst[p] = kAdd ? __fadd_rn(dst[p], v) : v;
  }
}

// col[r, c] for rows r = (ci, ky, kx) and columns c = (oy, ox) of the band
// of output rows starting at oy0: the input pixel under tap (ky, kx), or the
// zero padding. With kNorm the pixel is normalised first (image n of the
// NormOnRead's statistics), so the normalised map is never stored.
template <bool kNorm, typename I, typename T>
__global__ void im2col_band_kernel(const float* __restrict__ xn, int64_t Ci, int64_t H, int64_t W, int k, int stride,
                                   int pad_t, int pad_l, I Wo, int64_t oy0, int64_t Kdim, I cols, NormOnRead norm,
                                   int64_t n, T* __restrict__ col) {
  const int taps = k * k;
  for (int64_t r = blockIdx.y; r < Kdim; r += gridDim.y) {
    const int64_t ci = r / taps;
    const int kk = static_cast<int>(r - ci * taps);
    const int ky = kk / k, kx = kk % k;
    const float* src = xn + ci * H * W;
    T* dst = col + r * static_cast<int64_t>(cols);
    float m = 0.0f, ga = 1.0f, be = 0.0f;
    if constexpr (kNorm) {
      const float* st = norm.stats + (n * norm.groups + ci / (Ci / norm.groups)) * 2;
      m = st[0];
      ga = __fmul_rn(norm.gamma[ci], st[1]);
      be = norm.beta[ci];
    }
    for (I c = first_index<I>(); c < cols; c += grid_step<I>()) {
      const I oy = c / Wo;
      const I ox = c - oy * Wo;
      const int64_t iy = (oy0 + static_cast<int64_t>(oy)) * stride + ky - pad_t;
      const int64_t ix = static_cast<int64_t>(ox) * stride + kx - pad_l;
      const bool inside = iy >= 0 && iy < H && ix >= 0 && ix < W;
      float v = inside ? src[iy * W + ix] : 0.0f;
      if constexpr (kNorm) v = inside ? norm_value(v, m, ga, be, norm.silu) : 0.0f;
      dst[c] = to_stored<T>(v);
    }
  }
}

// ---- GroupNorm ----

// g(p[i]) for i = threadIdx.x, + blockDim.x, ... below n, four loads issued
// before they are used.
template <typename T, typename I, typename G>
__device__ inline void strided_by_four(const T* p, I n, G&& g) {
  const I step = blockDim.x;
  I i = threadIdx.x;
  for (; i + 3 * step < n; i += 4 * step) {
    const T a = p[i], b = p[i + step], c = p[i + 2 * step], d = p[i + 3 * step];
    g(a);
    g(b);
    g(c);
    g(d);
  }
  for (; i < n; i += step) g(p[i]);
}

// f(v) for every element of xs[0, cnt) this thread owns (as float4 loads
// when kVec: cnt % 4 == 0 and xs aligned).
template <bool kVec, typename I, typename F>
__device__ inline void for_each_owned(const float* xs, I cnt, F&& f) {
  if constexpr (kVec) {
    strided_by_four(reinterpret_cast<const float4*>(xs), static_cast<I>(cnt / 4), [&](const float4& q) {
      f(q.x);
      f(q.y);
      f(q.z);
      f(q.w);
    });
  } else {
    strided_by_four(xs, cnt, f);
  }
}

// The block's group xs[0, cnt): (mean, 1/sqrt(var + eps)) in float. Two
// passes, mean then variance, in double as the CPU; the block sums in a
// fixed order, so the result does not depend on other blocks.
template <bool kVec, typename I>
__device__ float2 group_mean_rstd(const float* xs, I cnt, float eps, double* red) {
  double s = 0.0;
  for_each_owned<kVec>(xs, cnt, [&](float v) { s += static_cast<double>(v); });
  const double mean = block_sum(s, red) / static_cast<double>(cnt);
  double q = 0.0;
  for_each_owned<kVec>(xs, cnt, [&](float v) {
    const double d = static_cast<double>(v) - mean;
    q = __dadd_rn(q, __dmul_rn(d, d));  // not fused, as the CPU
  });
  const double var = block_sum(q, red) / static_cast<double>(cnt);
  return make_float2(static_cast<float>(mean),
                     static_cast<float>(__ddiv_rn(1.0, __dsqrt_rn(__dadd_rn(var, static_cast<double>(eps))))));
}

// stats[n, g] = group_mean_rstd of x[n, group g]: one block per (image, group).
template <bool kVec, typename I>
__global__ void __launch_bounds__(kNormThreads)
    group_stats_kernel(const float* x, int64_t C, int64_t HW, int groups, float eps, float* stats) {
  __shared__ double red[32];
  const int64_t n = blockIdx.x / groups, g = blockIdx.x % groups;
  const int64_t cpg = C / groups;
  const float2 st = group_mean_rstd<kVec>(x + (n * C + g * cpg) * HW, static_cast<I>(cpg * HW), eps, red);
  if (threadIdx.x == 0) {
    stats[2 * blockIdx.x] = st.x;
    stats[2 * blockIdx.x + 1] = st.y;
  }
}

// One block per (image, group). x may be out: the statistics are read before
// the block's reductions complete, and the last pass reads each element
// before the same thread overwrites it.
template <bool kVec, typename I>
__global__ void __launch_bounds__(kNormThreads)
    group_norm_kernel(const float* x, int64_t C, int64_t HW, int groups, const float* gamma, const float* beta,
                      float eps, bool then_silu, float* out) {
  __shared__ double red[32];
  const int64_t n = blockIdx.x / groups, g = blockIdx.x % groups;
  const int64_t cpg = C / groups;
  const int64_t first = n * C + g * cpg;
  const float* xs = x + first * HW;
  float* os = out + first * HW;
  const I cnt = static_cast<I>(cpg * HW);

  const float2 st = group_mean_rstd<kVec>(xs, cnt, eps, red);
  const float m = st.x, rstd = st.y;

  const float* gs = gamma + g * cpg;
  const float* bs = beta + g * cpg;
  const I step = blockDim.x;
  I i = threadIdx.x;
  if constexpr (kVec) {
    // HW % 4 == 0, so a float4 never straddles two channels.
    const float4* x4 = reinterpret_cast<const float4*>(xs);
    float4* o4 = reinterpret_cast<float4*>(os);
    const I n4 = cnt / 4, hw4 = static_cast<I>(HW / 4);
    auto apply = [&](float4 v, I at) {
      const I c = at / hw4;
      const float ga = ops::group_norm_scale(gs[c], rstd), be = bs[c];
      v.x = norm_value(v.x, m, ga, be, then_silu);
      v.y = norm_value(v.y, m, ga, be, then_silu);
      v.z = norm_value(v.z, m, ga, be, then_silu);
      v.w = norm_value(v.w, m, ga, be, then_silu);
      o4[at] = v;
    };
    for (; i + step < n4; i += 2 * step) {
      const float4 a = x4[i], b = x4[i + step];
      apply(a, i);
      apply(b, i + step);
    }
    if (i < n4) apply(x4[i], i);
  } else {
    const I hw = static_cast<I>(HW);
    auto apply = [&](float v, I at) {
      const I c = at / hw;
      os[at] = norm_value(v, m, ops::group_norm_scale(gs[c], rstd), bs[c], then_silu);
    };
    for (; i + step < cnt; i += 2 * step) {
      const float a = xs[i], b = xs[i + step];
      apply(a, i);
      apply(b, i + step);
    }
    if (i < cnt) apply(xs[i], i);
  }
}

// ---- resampling ----

// One thread per input pixel (plane row r = c·H + y, column xx) writes its
// 2×2 block; output row 2y of plane c starts at (c·2H + 2y)·2W = r·4W.
template <typename I>
__global__ void upsample_nearest2x_kernel(const float* __restrict__ x, I total, I W, float* __restrict__ out) {
  const int64_t W2 = 2 * static_cast<int64_t>(W);
  for (I e = first_index<I>(); e < total; e += grid_step<I>()) {
    const I r = e / W;
    const I xx = e - r * W;
    const float v = x[e];
    float* d = out + static_cast<int64_t>(r) * 2 * W2 + 2 * static_cast<int64_t>(xx);
    d[0] = v;
    d[1] = v;
    d[W2] = v;
    d[W2 + 1] = v;
  }
}

enum class Resample { Bicubic, Area };

// One thread per output pixel of [planes, out_h, out_w] from [planes, in_h,
// in_w]; bicubic taps are recomputed per pixel (a few dozen flops) rather
// than kept in a table, which would need a copy.
template <Resample kMode, typename I>
__global__ void resample_kernel(const float* __restrict__ x, I total, int64_t in_h, int64_t in_w, I out_h, I out_w,
                                float* __restrict__ out) {
  for (I e = first_index<I>(); e < total; e += grid_step<I>()) {
    const I row = e / out_w;
    const I ox = e - row * out_w;
    const I c = row / out_h;
    const I oy = row - c * out_h;
    const float* plane = x + static_cast<int64_t>(c) * in_h * in_w;
    out[e] = kMode == Resample::Bicubic ? ops::bicubic_pixel(plane, in_h, in_w, out_h, out_w, oy, ox)
                                        : ops::area_pixel(plane, in_h, in_w, out_h, out_w, oy, ox);
  }
}

// ---- codebook search ----

// e2[v] = Σ_c e[v, c]², summed in channel order in float as the CPU.
__global__ void squared_norms_kernel(const float* __restrict__ e, int64_t V, int64_t C, float* __restrict__ e2) {
  for (int64_t v = first_index<int64_t>(); v < V; v += grid_step<int64_t>()) {
    const float* ev = e + v * C;
    float s = 0.0f;
    for (int64_t c = 0; c < C; ++c) s = __fadd_rn(s, __fmul_rn(ev[c], ev[c]));
    e2[v] = s;
  }
}

// Keeps the smaller distance, and of equal ones the smaller index. NaN
// never wins (nor does it in the CPU's `d < best`).
__device__ inline void argmin_merge(float& best, int32_t& arg, float d, int32_t i) {
  if (d < best || (d == best && i < arg)) {
    best = d;
    arg = i;
  }
}

// Every thread of the block gets the block's (best, arg); `sd`/`si` hold 32
// values. The merge is a total order on (distance, index), so the butterfly
// leaves all lanes with the same pair.
__device__ inline void block_argmin(float& best, int32_t& arg, float* sd, int32_t* si) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  for (int o = 16; o > 0; o >>= 1)
    argmin_merge(best, arg, __shfl_xor_sync(0xffffffffu, best, o), __shfl_xor_sync(0xffffffffu, arg, o));
  __syncthreads();  // the arrays may still be read for the previous row
  if (lane == 0) {
    sd[warp] = best;
    si[warp] = arg;
  }
  __syncthreads();
  best = lane < warps ? sd[lane] : INFINITY;
  arg = lane < warps ? si[lane] : INT32_MAX;
  for (int o = 16; o > 0; o >>= 1)
    argmin_merge(best, arg, __shfl_xor_sync(0xffffffffu, best, o), __shfl_xor_sync(0xffffffffu, arg, o));
}

// One block per row: d = (z² + e²) − 2·z·e rounded as the CPU's expression,
// the first index of the smallest d (0 when no d is below +inf, as there).
// dots is null when C == 0 (every dot product is 0).
__global__ void nearest_code_kernel(const float* __restrict__ z, int64_t rows, int64_t C,
                                    const float* __restrict__ dots, const float* __restrict__ e2, int64_t V,
                                    int32_t* __restrict__ idx) {
  __shared__ float sd[32];
  __shared__ int32_t si[32];
  for (int64_t i = blockIdx.x; i < rows; i += gridDim.x) {
    // Every thread sums |z|² itself, in the CPU's order, instead of waiting
    // for one thread's result.
    const float* zi = z + i * C;
    float z2 = 0.0f;
    for (int64_t c = 0; c < C; ++c) z2 = __fadd_rn(z2, __fmul_rn(zi[c], zi[c]));
    float best = INFINITY;
    int32_t arg = INT32_MAX;
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
      const float dot = dots ? dots[i * V + v] : 0.0f;
      const float d = __fsub_rn(__fadd_rn(z2, e2[v]), __fmul_rn(2.0f, dot));
      if (d < best) {  // v ascends, so strict keeps the first of equal ones
        best = d;
        arg = static_cast<int32_t>(v);
      }
    }
    block_argmin(best, arg, sd, si);
    if (threadIdx.x == 0) idx[i] = arg == INT32_MAX ? 0 : arg;
  }
}

// ---- launch shapes ----

// fill_planes_kernel over `planes` planes of P pixels.
inline dim3 plane_grid(int64_t P, int64_t planes) {
  return dim3(grid_for(static_cast<size_t>(P), kThreads), static_cast<unsigned>(std::min<int64_t>(planes, kMaxGridY)));
}

// Output rows per im2col band: as many as keep the band's Kdim rows of
// columns within `band_elements`, at least one.
inline int64_t im2col_band_rows(int64_t Kdim, int64_t Ho, int64_t Wo, int64_t band_elements) {
  const int64_t max_cols = std::max<int64_t>(Wo, band_elements / Kdim);
  return std::max<int64_t>(1, std::min<int64_t>(Ho, max_cols / Wo));
}

// im2col_band_kernel over a band of `cols` columns and Kdim rows.
inline dim3 im2col_grid(int64_t cols, int64_t Kdim) {
  return dim3(grid_for(static_cast<size_t>(cols), kThreads), static_cast<unsigned>(std::min<int64_t>(Kdim, kMaxGridY)));
}

// GroupNorm's kernels: one block per (image, group), each of kNormThreads.
inline unsigned group_blocks(int64_t N, int groups) { return static_cast<unsigned>(N * groups); }

// Whether the GroupNorm kernels may read (and write) a map of HW-pixel
// planes as float4.
inline bool group_float4(int64_t HW, const void* map) { return HW % 4 == 0 && aligned16(map); }

// Rows of codebook distances per nearest_code_kernel launch, for a scratch
// of `scratch_elements` floats.
inline int64_t nearest_code_rows(int64_t n, int64_t V, int64_t scratch_elements) {
  return std::min<int64_t>(n, std::max<int64_t>(1, scratch_elements / V));
}

// nearest_code_kernel's blocks for `rows` rows (a grid-stride loop past 2^20).
inline unsigned nearest_code_blocks(int64_t rows) {
  return static_cast<unsigned>(std::min<int64_t>(rows, int64_t{1} << 20));
}

}  // namespace
}  // namespace varps::cuda::image
