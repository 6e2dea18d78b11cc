#pragma once
// The types the CUDA backend stores besides float32 (bf16/fp16 product
// operands and KV caches): rounding to them (to nearest even) and back.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace varps::cuda {

template <typename T>
__device__ inline T to_stored(float v);
template <>
__device__ inline float to_stored<float>(float v) {
  return v;
}
template <>
__device__ inline __nv_bfloat16 to_stored<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
template <>
__device__ inline __half to_stored<__half>(float v) {
  return __float2half_rn(v);
}

__device__ inline float from_stored(float v) { return v; }
__device__ inline float from_stored(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ inline float from_stored(__half v) { return __half2float(v); }

}  // namespace varps::cuda
