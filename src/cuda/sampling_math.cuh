#pragma once
// The order-preserving float key the CUDA sampler sorts logits by, callable
// from host and device so it can be checked without a GPU
// (tests/cuda/test_cuda_host_math.cpp). The uniform draw is ops/philox.hpp,
// shared with the CPU sampler.
#include <cstdint>
#include <cstring>

namespace varps::cuda {

__host__ __device__ inline uint32_t float_bits(float f) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(f);
#else
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
#endif
}

__host__ __device__ inline float bits_float(uint32_t b) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(b);
#else
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
#endif
}

// Unsigned comparison of the result orders floats as `<` does, with -0.0
// folded into +0.0 (they compare equal, so the CPU's stable sort keeps them
// in index order; a distinct key would not). NaNs land outside [-inf, +inf].
__host__ __device__ inline uint32_t float_order_key(float f) {
  uint32_t b = float_bits(f);
  if (b == 0x80000000u) b = 0u;
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

__host__ __device__ inline float order_key_float(uint32_t k) {
  return bits_float((k & 0x80000000u) ? (k & 0x7FFFFFFFu) : ~k);
}

}  // namespace varps::cuda
