#pragma once
// Runs CUDA kernels on the CPU, so that kernels can be checked against the
// CPU backend on machines without a GPU (this one, and CI). A kernel header
// (src/cuda/*_kernel.cuh) built by the host compiler after this header sees
// the device built-ins it uses defined here:
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
// fragment layouts, the online softmax. What it cannot: timing, the memory
// model beyond the barriers, and the tensor core's summation order (the
// emulated product adds in k order in float32).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <functional>

#undef __shared__
#define __shared__ static
#define __launch_bounds__(...)

extern thread_local uint3 threadIdx;
extern thread_local uint3 blockIdx;
extern thread_local dim3 blockDim;
extern thread_local dim3 gridDim;

void __syncthreads();
float __shfl_xor_sync(unsigned mask, float v, int lane_mask);

inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }

namespace varps::testing::emulator {

// Runs body once per thread of every block, with the built-ins above set.
// The kernels' pointers are host memory.
// Blocks must be one-dimensional in threads and a whole number of warps.
void run_grid(dim3 grid, dim3 block, const std::function<void()>& body);

template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, Args... args) {
  run_grid(grid, block, [&] { kernel(static_cast<Params>(args)...); });
}

}  // namespace varps::testing::emulator
