// Image-space ops of the CUDA backend (NCHW): convolution (float32 as
// im2col plus cuBLASLt products, bf16/fp16 as the implicit GEMM of
// cuda_conv_mma.cu; 1×1 on a plain input as one product), GroupNorm, the
// PyTorch resampling modes and the codebook search. They follow the CPU reference (src/cpu/cpu_image.cpp):
// the resampling kernels round every operation as it does (see
// resample_math.cuh) and match it bit for bit; GroupNorm's statistics are
// accumulated in double as there; the products round as cuBLASLt does.
// Everything is enqueued on the backend's stream with no allocation,
// synchronisation or host copy, so the ops can be captured in CUDA graphs.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "cuda/block_reduce.cuh"
#include "cuda/conv_mma.hpp"
#include "cuda/cuda_backend.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/group_norm_math.cuh"
#include "cuda/resample_math.cuh"
#include "cuda/storage_types.cuh"

namespace varps::cuda {

namespace {

constexpr unsigned kThreads = 256;
// One block streams a whole GroupNorm group, so it gets as many loads in
// flight as a block can hold.
constexpr unsigned kNormThreads = 1024;
constexpr unsigned kMaxGridY = 65535;
constexpr int64_t kBandFloats = CudaBackend::kBandElements;

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

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

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
      const float ga = __fmul_rn(gs[c], rstd), be = bs[c];
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
      os[at] = norm_value(v, m, __fmul_rn(gs[c], rstd), bs[c], then_silu);
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
    out[e] = kMode == Resample::Bicubic ? resample::bicubic_pixel(plane, in_h, in_w, out_h, out_w, oy, ox)
                                        : resample::area_pixel(plane, in_h, in_w, out_h, out_w, oy, ox);
  }
}

template <Resample kMode>
void launch_resample(cudaStream_t s, const float* x, int64_t NC, int64_t in_h, int64_t in_w, int64_t out_h,
                     int64_t out_w, float* out) {
  const int64_t total = NC * out_h * out_w;
  if (total <= 0) return;
  with_index_type(total, [&](auto tag) {
    using I = decltype(tag);
    resample_kernel<kMode, I><<<grid_for(static_cast<size_t>(total), kThreads), kThreads, 0, s>>>(
        x, static_cast<I>(total), in_h, in_w, static_cast<I>(out_h), static_cast<I>(out_w), out);
  });
  VARPS_CUDA_LAUNCHED("resample_kernel");
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

}  // namespace

void CudaBackend::conv2d(const float* x, int64_t N, int64_t Ci, int64_t H, int64_t W, const float* w, const float* b,
                         int64_t Co, int k, int stride, int pad_t, int pad_l, int pad_b, int pad_r, float* out) {
  convolve(x, N, Ci, H, W, nullptr, w, b, Co, k, stride, pad_t, pad_l, pad_b, pad_r, false, out);
}

void CudaBackend::normalized_conv2d(const float* x, int64_t N, int64_t Ci, int64_t H, int64_t W,
                                    const NormOnRead& norm, const float* w, const float* b, int64_t Co, int k,
                                    bool add_to_out, float* out) {
  if (k % 2 != 1 || norm.groups <= 0 || Ci % norm.groups != 0)
    throw Error("CUDA normalized_conv2d: needs an odd kernel and whole groups");
  convolve(x, N, Ci, H, W, &norm, w, b, Co, k, 1, k / 2, k / 2, k / 2, k / 2, add_to_out, out);
}

void CudaBackend::convolve(const float* x, int64_t N, int64_t Ci, int64_t H, int64_t W, const NormOnRead* norm,
                           const float* w, const float* b, int64_t Co, int k, int stride, int pad_t, int pad_l,
                           int pad_b, int pad_r, bool add_to_out, float* out) {
  const int64_t Ho = (H + pad_t + pad_b - k) / stride + 1;
  const int64_t Wo = (W + pad_l + pad_r - k) / stride + 1;
  if (N <= 0 || Co <= 0 || Ho <= 0 || Wo <= 0) return;
  const int64_t P = Ho * Wo;
  const int64_t Kdim = Ci * k * k;
  const cudaStream_t s = stream();
  // With bf16/fp16 products the weight and the input columns are half
  // precision (float32 accumulation into out); else everything is float32.
  const bool half = precision_ != Precision::F32;
  const bool pointwise = !norm && k == 1 && stride == 1 && pad_t == 0 && pad_l == 0 && pad_b == 0 && pad_r == 0;
  if (half && Kdim > 0 && !pointwise) {
    // Tensor cores, the columns built in shared memory (cuda_conv_mma.cu).
    const ConvGeometry geo{N, Ci, H, W, Co, Ho, Wo, k, stride, pad_t, pad_l};
    const void* wop = matrix_operand(w, static_cast<size_t>(Co * Kdim));
    if (precision_ == Precision::BF16)
      launch_conv_mma(s, x, geo, norm, static_cast<const __nv_bfloat16*>(wop), b, add_to_out, out);
    else
      launch_conv_mma(s, x, geo, norm, static_cast<const __half*>(wop), b, add_to_out, out);
    return;
  }
  if (b || (Kdim == 0 && !add_to_out)) {
    // With no input channels the product is empty: out is the bias (or 0).
    const int64_t planes = N * Co;
    const dim3 grid(grid_for(static_cast<size_t>(P), kThreads),
                    static_cast<unsigned>(std::min<int64_t>(planes, kMaxGridY)));
    with_index_type(P, [&](auto tag) {
      using I = decltype(tag);
      if (add_to_out)
        fill_planes_kernel<true, I><<<grid, kThreads, 0, s>>>(out, planes, Co, static_cast<I>(P), b);
      else
        fill_planes_kernel<false, I><<<grid, kThreads, 0, s>>>(out, planes, Co, static_cast<I>(P), b);
    });
    VARPS_CUDA_LAUNCHED("fill_planes_kernel");
  }
  if (Kdim == 0) return;
  const float beta = b || add_to_out ? 1.0f : 0.0f;
  const cudaDataType_t operands = half ? half_type() : CUDA_R_32F;
  const void* wop = half ? matrix_operand(w, static_cast<size_t>(Co * Kdim)) : w;

  if (pointwise) {
    for (int64_t n = 0; n < N; ++n) {
      const float* xn = x + n * Ci * H * W;
      const void* xop = half ? half_activations(xn, static_cast<size_t>(Ci * P)) : xn;
      row_major_product(false, false, Co, P, Ci, 1.0f, wop, Ci, xop, P, beta, out + n * Co * P, P, operands);
    }
    return;
  }

  // float32: im2col over bands of output rows, as the CPU, with a larger band.
  const int64_t max_cols = std::max<int64_t>(Wo, kBandFloats / Kdim);
  const int64_t band_rows = std::max<int64_t>(1, std::min<int64_t>(Ho, max_cols / Wo));
  const size_t col_elems = static_cast<size_t>(Kdim * band_rows * Wo);
  void* col = scratch(half ? (col_elems + 1) / 2 : col_elems);
  const NormOnRead no_norm{};
  for (int64_t n = 0; n < N; ++n) {
    const float* xn = x + n * Ci * H * W;
    for (int64_t oy0 = 0; oy0 < Ho; oy0 += band_rows) {
      const int64_t rows = std::min(band_rows, Ho - oy0);
      const int64_t cols = rows * Wo;
      const dim3 grid(grid_for(static_cast<size_t>(cols), kThreads),
                      static_cast<unsigned>(std::min<int64_t>(Kdim, kMaxGridY)));
      with_index_type(cols, [&](auto tag) {
        using I = decltype(tag);
        auto launch = [&](auto* typed_col) {
          using T = std::remove_pointer_t<decltype(typed_col)>;
          if (norm)
            im2col_band_kernel<true, I, T><<<grid, kThreads, 0, s>>>(xn, Ci, H, W, k, stride, pad_t, pad_l,
                                                                     static_cast<I>(Wo), oy0, Kdim,
                                                                     static_cast<I>(cols), *norm, n, typed_col);
          else
            im2col_band_kernel<false, I, T><<<grid, kThreads, 0, s>>>(xn, Ci, H, W, k, stride, pad_t, pad_l,
                                                                      static_cast<I>(Wo), oy0, Kdim,
                                                                      static_cast<I>(cols), no_norm, n, typed_col);
        };
        if (!half)
          launch(static_cast<float*>(col));
        else if (precision_ == Precision::BF16)
          launch(static_cast<__nv_bfloat16*>(col));
        else
          launch(static_cast<__half*>(col));
      });
      VARPS_CUDA_LAUNCHED("im2col_band_kernel");
      row_major_product(false, false, Co, cols, Kdim, 1.0f, wop, Kdim, col, cols, beta, out + n * Co * P + oy0 * Wo, P,
                        operands);
    }
  }
}

void CudaBackend::group_norm_stats(const float* x, int64_t N, int64_t C, int64_t HW, int groups, float eps,
                                   float* stats) {
  if (N <= 0 || C <= 0 || HW <= 0 || groups <= 0 || C / groups == 0) return;
  const int64_t cnt = C / groups * HW;
  const bool vec = HW % 4 == 0 && aligned16(x);
  const unsigned blocks = static_cast<unsigned>(N * groups);
  const cudaStream_t s = stream();
  with_index_type(cnt, [&](auto tag) {
    using I = decltype(tag);
    if (vec)
      group_stats_kernel<true, I><<<blocks, kNormThreads, 0, s>>>(x, C, HW, groups, eps, stats);
    else
      group_stats_kernel<false, I><<<blocks, kNormThreads, 0, s>>>(x, C, HW, groups, eps, stats);
  });
  VARPS_CUDA_LAUNCHED("group_stats_kernel");
}

void CudaBackend::group_norm(const float* x, int64_t N, int64_t C, int64_t HW, int groups, const float* gamma,
                             const float* beta, float eps, bool then_silu, float* out) {
  if (N <= 0 || C <= 0 || HW <= 0 || groups <= 0 || C / groups == 0) return;
  const int64_t cnt = C / groups * HW;
  const bool vec = HW % 4 == 0 && aligned16(x) && aligned16(out);
  const unsigned blocks = static_cast<unsigned>(N * groups);
  const cudaStream_t s = stream();
  with_index_type(cnt, [&](auto tag) {
    using I = decltype(tag);
    if (vec)
      group_norm_kernel<true, I><<<blocks, kNormThreads, 0, s>>>(x, C, HW, groups, gamma, beta, eps, then_silu, out);
    else
      group_norm_kernel<false, I><<<blocks, kNormThreads, 0, s>>>(x, C, HW, groups, gamma, beta, eps, then_silu, out);
  });
  VARPS_CUDA_LAUNCHED("group_norm_kernel");
}

void CudaBackend::upsample_nearest2x(const float* x, int64_t NC, int64_t H, int64_t W, float* out) {
  const int64_t total = NC * H * W;
  if (total <= 0) return;
  const cudaStream_t s = stream();
  with_index_type(total, [&](auto tag) {
    using I = decltype(tag);
    upsample_nearest2x_kernel<I><<<grid_for(static_cast<size_t>(total), kThreads), kThreads, 0, s>>>(
        x, static_cast<I>(total), static_cast<I>(W), out);
  });
  VARPS_CUDA_LAUNCHED("upsample_nearest2x_kernel");
}

void CudaBackend::upsample_bicubic(const float* x, int64_t NC, int64_t h, int64_t w, int64_t H, int64_t W, float* out) {
  if (h <= 0 || w <= 0) return;
  launch_resample<Resample::Bicubic>(stream(), x, NC, h, w, H, W, out);
}

void CudaBackend::downsample_area(const float* x, int64_t NC, int64_t H, int64_t W, int64_t h, int64_t w, float* out) {
  launch_resample<Resample::Area>(stream(), x, NC, H, W, h, w, out);
}

void CudaBackend::nearest_code(const float* z, int64_t n, const float* codebook, int64_t V, int64_t C, int32_t* idx) {
  if (n <= 0 || V <= 0) return;
  // Distances for a chunk of rows at a time bound the scratch for large batches.
  const int64_t chunk = std::min<int64_t>(n, std::max<int64_t>(1, kBandFloats / V));
  float* dots = scratch(static_cast<size_t>(chunk * V + V));
  float* e2 = dots + chunk * V;
  const cudaStream_t s = stream();
  squared_norms_kernel<<<grid_for(static_cast<size_t>(V), kThreads), kThreads, 0, s>>>(codebook, V, C, e2);
  VARPS_CUDA_LAUNCHED("squared_norms_kernel");
  for (int64_t r0 = 0; r0 < n; r0 += chunk) {
    const int64_t rows = std::min(chunk, n - r0);
    // dots[i, v] = z[i]·e[v]; with C == 0 the product is empty (cuBLASLt
    // takes no k = 0) and every dot product is 0.
    if (C > 0) gemm(false, true, rows, V, C, 1.0f, z + r0 * C, C, codebook, C, 0.0f, dots, V);
    const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(rows, int64_t{1} << 20));
    nearest_code_kernel<<<blocks, kThreads, 0, s>>>(z + r0 * C, rows, C, C > 0 ? dots : nullptr, e2, V, idx + r0);
    VARPS_CUDA_LAUNCHED("nearest_code_kernel");
  }
}

}  // namespace varps::cuda
