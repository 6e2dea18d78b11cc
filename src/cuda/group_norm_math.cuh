#pragma once
// GroupNorm's per-element arithmetic, shared by the GroupNorm kernel and the
// convolutions that normalise their input as they read it.
#include <cuda_runtime.h>

#include "ops/group_norm.hpp"

namespace varps::cuda {

// The affine map of ops/group_norm.hpp, then SiLU as y / (1 + e^−y).
__device__ inline float norm_value(float v, float m, float ga, float be, bool then_silu) {
  const float y = ops::group_norm_affine(v, m, ga, be);
  return then_silu ? __fdiv_rn(y, __fadd_rn(1.0f, expf(-y))) : y;
}

}  // namespace varps::cuda
