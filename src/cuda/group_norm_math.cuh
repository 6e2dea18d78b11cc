#pragma once
// GroupNorm's per-element arithmetic, shared by the GroupNorm kernel and the
// convolutions that normalise their input as they read it.
#include <cuda_runtime.h>

namespace varps::cuda {

// (x − m)·ga + be, then x / (1 + e^−x), each step rounded as the CPU's
// float expressions.
__device__ inline float norm_value(float v, float m, float ga, float be, bool then_silu) {
  const float y = __fadd_rn(__fmul_rn(__fsub_rn(v, m), ga), be);
  return then_silu ? __fdiv_rn(y, __fadd_rn(1.0f, expf(-y))) : y;
}

}  // namespace varps::cuda
