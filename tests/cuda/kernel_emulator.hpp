#pragma once
// Runs CUDA kernels on the CPU, so that kernels can be checked against the
// CPU backend on machines without a GPU (the development VM, and CI). A
// kernel header (src/cuda/*_kernel.cuh, *_kernels.cuh) built by the host
// compiler after this header sees the device built-ins it uses defined here:
//
// - every thread of a block is a std::thread; the blocks of a grid run one
//   after another, so a kernel's __shared__ arrays become function statics;
// - __syncthreads() is a barrier of the block's threads, and the warp-wide
//   operations (__shfl_xor_sync, the tensor-core product of
//   mma_m16n8k16.cuh) a barrier of the warp's 32 threads;
// - the _rn intrinsics are the host's float operators (the project builds
//   with -ffp-contract=off, so each is one rounding, as on the device).
//
// What it checks is the kernel's own logic: indexing, tiling, bounds,
// fragment layouts, barriers, the online softmax. What it cannot: timing,
// the memory model beyond the barriers, the device's expf and sqrt (the
// host's stand in), and the tensor core's summation order (the emulated
// product adds in k order in float32).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>

#undef __shared__
#define __shared__ static
#define __launch_bounds__(...)

extern thread_local uint3 threadIdx;
extern thread_local uint3 blockIdx;
extern thread_local dim3 blockDim;
extern thread_local dim3 gridDim;

namespace varps::testing::emulator {
// Every lane of the calling warp offers `mine`; each gets lane `from`'s.
void warp_exchange(const void* mine, void* got, size_t bytes, int from);
}  // namespace varps::testing::emulator

void __syncthreads();

template <typename T>
T __shfl_xor_sync(unsigned, T v, int lane_mask) {
  T got;
  varps::testing::emulator::warp_exchange(&v, &got, sizeof(T), static_cast<int>(threadIdx.x % 32) ^ lane_mask);
  return got;
}

template <typename T>
T __shfl_sync(unsigned, T v, int src_lane) {
  T got;
  varps::testing::emulator::warp_exchange(&v, &got, sizeof(T), src_lane % 32);
  return got;
}

using std::max;
using std::min;

inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }

namespace varps::testing::emulator {

// Runs body once per thread of every block, with the built-ins above set
// and `shared_bytes` of dynamic shared memory (VARPS_DYNAMIC_SHARED). Blocks
// must be one-dimensional in threads and a whole number of warps. The
// kernels' pointers are host memory.
void run_grid(dim3 grid, dim3 block, size_t shared_bytes, const std::function<void()>& body);

// kernel<<<grid, block, shared_bytes>>>(args...)
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes, Args... args) {
  run_grid(grid, block, shared_bytes, [&] { kernel(static_cast<Params>(args)...); });
}

}  // namespace varps::testing::emulator
