// Image-space ops of the CUDA backend (NCHW): convolution (float32 as
// im2col plus cuBLASLt products, bf16/fp16 as the implicit GEMM of
// cuda_conv_mma.cu; 1×1 on a plain input as one product), GroupNorm, the
// PyTorch resampling modes and the codebook search, launching the kernels
// of image_kernels.cuh; the products round as cuBLASLt does. Everything is
// enqueued on the backend's stream with no allocation, synchronisation or
// host copy, so the ops can be captured in CUDA graphs.
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "cuda/conv_mma.hpp"
#include "cuda/cuda_backend.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/image_kernels.cuh"

namespace varps::cuda {

using namespace image;

namespace {

constexpr int64_t kBandFloats = CudaBackend::kBandElements;

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

}  // namespace

void CudaBackend::do_conv2d(const float* x, int64_t N, int64_t Ci, int64_t H, int64_t W, const float* w, const float* b,
                         int64_t Co, int k, int stride, int pad_t, int pad_l, int pad_b, int pad_r, float* out) {
  convolve(x, N, Ci, H, W, nullptr, w, b, Co, k, stride, pad_t, pad_l, pad_b, pad_r, false, out);
}

void CudaBackend::do_normalized_conv2d(const float* x, int64_t N, int64_t Ci, int64_t H, int64_t W,
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
    const cuda::ConvGeometry geo{N, Ci, H, W, Co, Ho, Wo, k, stride, pad_t, pad_l};
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
    const dim3 grid = plane_grid(P, planes);
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
  const int64_t band_rows = im2col_band_rows(Kdim, Ho, Wo, kBandFloats);
  const size_t col_elems = static_cast<size_t>(Kdim * band_rows * Wo);
  void* col = scratch(half ? (col_elems + 1) / 2 : col_elems);
  const NormOnRead no_norm{};
  for (int64_t n = 0; n < N; ++n) {
    const float* xn = x + n * Ci * H * W;
    for (int64_t oy0 = 0; oy0 < Ho; oy0 += band_rows) {
      const int64_t rows = std::min(band_rows, Ho - oy0);
      const int64_t cols = rows * Wo;
      const dim3 grid = im2col_grid(cols, Kdim);
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

void CudaBackend::do_group_norm_stats(const float* x, int64_t N, int64_t C, int64_t HW, int groups, float eps,
                                   float* stats) {
  if (N <= 0 || C <= 0 || HW <= 0 || groups <= 0 || C / groups == 0) return;
  const int64_t cnt = C / groups * HW;
  const bool vec = group_float4(HW, x);
  const unsigned blocks = group_blocks(N, groups);
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

void CudaBackend::do_group_norm(const float* x, int64_t N, int64_t C, int64_t HW, int groups, const float* gamma,
                             const float* beta, float eps, bool then_silu, float* out) {
  if (N <= 0 || C <= 0 || HW <= 0 || groups <= 0 || C / groups == 0) return;
  const int64_t cnt = C / groups * HW;
  const bool vec = group_float4(HW, x) && group_float4(HW, out);
  const unsigned blocks = group_blocks(N, groups);
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

void CudaBackend::do_upsample_nearest2x(const float* x, int64_t NC, int64_t H, int64_t W, float* out) {
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

void CudaBackend::do_upsample_bicubic(const float* x, int64_t NC, int64_t h, int64_t w, int64_t H, int64_t W, float* out) {
  if (h <= 0 || w <= 0) return;
  launch_resample<Resample::Bicubic>(stream(), x, NC, h, w, H, W, out);
}

void CudaBackend::do_downsample_area(const float* x, int64_t NC, int64_t H, int64_t W, int64_t h, int64_t w, float* out) {
  launch_resample<Resample::Area>(stream(), x, NC, H, W, h, w, out);
}

void CudaBackend::do_nearest_code(const float* z, int64_t n, const float* codebook, int64_t V, int64_t C, int32_t* idx) {
  if (n <= 0 || V <= 0) return;
  // Distances for a chunk of rows at a time bound the scratch for large batches.
  const int64_t chunk = nearest_code_rows(n, V, kBandFloats);
  float* dots = scratch(static_cast<size_t>(chunk * V + V));
  float* e2 = dots + chunk * V;
  const cudaStream_t s = stream();
  squared_norms_kernel<<<grid_for(static_cast<size_t>(V), kThreads), kThreads, 0, s>>>(codebook, V, C, e2);
  VARPS_CUDA_LAUNCHED("squared_norms_kernel");
  for (int64_t r0 = 0; r0 < n; r0 += chunk) {
    const int64_t rows = std::min(chunk, n - r0);
    // dots[i, v] = z[i]·e[v]; with C == 0 the product is empty (cuBLASLt
    // takes no k = 0) and every dot product is 0.
    if (C > 0) do_gemm(false, true, rows, V, C, 1.0f, z + r0 * C, C, codebook, C, 0.0f, dots, V);
    nearest_code_kernel<<<nearest_code_blocks(rows), kThreads, 0, s>>>(z + r0 * C, rows, C, C > 0 ? dots : nullptr, e2,
                                                                       V, idx + r0);
    VARPS_CUDA_LAUNCHED("nearest_code_kernel");
  }
}

}  // namespace varps::cuda
