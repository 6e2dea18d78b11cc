#pragma once
// Warp and block reductions for the CUDA kernels. A block reduction's
// result is the same for every block size that divides the work the same
// way, and independent of what other blocks do: no atomics, so a row's
// result never depends on the batch.
#include <cuda_runtime.h>

namespace varps::cuda {

template <typename T>
__device__ inline T warp_sum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

template <typename T>
__device__ inline T warp_max(T v) {
  for (int o = 16; o > 0; o >>= 1) v = max(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Every thread of the block gets the sum; `shared` holds 32 values.
// Blocks are whole warps.
template <typename T>
__device__ inline T block_sum(T v, T* shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  __syncthreads();  // `shared` may still be read from a previous call
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  T total = lane < warps ? shared[lane] : T(0);
  return warp_sum(total);
}

template <typename T>
__device__ inline T block_max(T v, T* shared, T lowest) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  T m = lane < warps ? shared[lane] : lowest;
  return warp_max(m);
}

// Grid size for n elements, `per_block` threads, capped for grid-stride loops.
inline unsigned grid_for(size_t n, unsigned per_block) {
  const size_t blocks = (n + per_block - 1) / per_block;
  return static_cast<unsigned>(blocks < 65535u * 16u ? (blocks > 0 ? blocks : 1) : 65535u * 16u);
}

}  // namespace varps::cuda
