#pragma once
// The tensor-core convolution (cuda_conv_mma.cu): an implicit GEMM for
// bf16/fp16 products, whose im2col columns exist only as shared-memory tiles.
#include <cuda_runtime.h>

#include <cstdint>

#include "backend.hpp"

namespace varps::cuda {

// out[N, Co, Ho, Wo] from x[N, Ci, H, W] and w[Co, Ci, k, k], zero padding
// pad_t/pad_l before the first row and column (the far sides follow from
// Ho and Wo).
struct ConvGeometry {
  int64_t N = 0, Ci = 0, H = 0, W = 0, Co = 0, Ho = 0, Wo = 0;
  int k = 1, stride = 1, pad_t = 0, pad_l = 0;
};

// As Backend::conv2d / normalized_conv2d (norm given) for T = __nv_bfloat16
// or __half weights: out = bias + product, or (out + bias) + product with
// add_to_out, the product accumulated in float32 over operands rounded to T.
// b may be null.
template <typename T>
void launch_conv_mma(cudaStream_t stream, const float* x, const ConvGeometry& g, const NormOnRead* norm, const T* w,
                     const float* b, bool add_to_out, float* out);

}  // namespace varps::cuda
