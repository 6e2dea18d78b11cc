#pragma once
// Runs CUDA kernels on the CPU, so that kernels can be checked against the
// CPU backend on machines without a GPU (the development VM, and CI). A
// kernel header (src/cuda/*_kernel.cuh, *_kernels.cuh) built by the host
// compiler after this header sees the device built-ins it uses defined here:
//
// - every thread of a block is a fiber (a ucontext with its own stack) of
//   the calling thread; the blocks of a grid run one after another, so a
//   kernel's __shared__ arrays become function statics;
// - __syncthreads() (and __syncthreads_or) is a barrier of the block's
//   threads, and the warp-wide operations (__shfl_xor_sync, the tensor-core
//   product of mma_m16n8k16.cuh) a barrier of the warp's 32 threads. A
//   thread runs until it waits at a barrier or returns, then the next of
//   its warp; a warp runs on through its own barriers until its threads
//   wait at the block's, then the next warp. So warps lie as far apart as
//   the block's barriers allow, and the order reverses after each: a
//   missing barrier shows in one of the two orders. Threads that wait at
//   different barriers fail the launch;
// - the _rn intrinsics are the host's float and double operators (the
//   project builds with -ffp-contract=off, so each is one rounding, as on
//   the device);
// - the two CUB collectives the sampling kernel uses are emulated_cub
//   below.
//
// What it checks is the kernel's own logic: indexing, tiling, bounds,
// fragment layouts, barriers, the online softmax, the sort and scans of
// the sampler. What it cannot: timing, races that neither order shows,
// the memory model beyond the barriers, the device's expf, tanhf, exp and
// sqrt (the host's stand in), the tensor core's summation order (the
// emulated product adds in k order in float32), CUB's own code and
// summation order, and the device's conversions to bf16/fp16 (the host
// code of cuda_bf16.h and cuda_fp16.h stands in).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
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
// 1 for every thread when some thread of the block passes a non-zero predicate.
int __syncthreads_or(int predicate);

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
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline double __dsqrt_rn(double a) { return std::sqrt(a); }

// CUB's BlockReduce and BlockScan (cub/block/block_reduce.cuh,
// block_scan.cuh) for what the sampling kernel calls: Reduce, whose result
// only thread 0 gets, and InclusiveSum seeded by a block-prefix callback
// that the first warp calls with the block's total and whose lane 0 answer
// every thread adds. Every thread of the block takes part, as in CUB, and
// the temporary storage may be reused only after a barrier. Values combine
// in thread order, where CUB's trees associate differently: float and
// double sums may differ in their last bits, the max/min/argmax are exact.
namespace emulated_cub {

template <typename T, int kThreads>
class BlockReduce {
 public:
  struct TempStorage {
    T value[kThreads];
  };
  explicit BlockReduce(TempStorage& storage) : s_(storage) {}
  template <typename Op>
  T Reduce(T v, Op op) {
    s_.value[threadIdx.x] = v;
    __syncthreads();
    if (threadIdx.x != 0) return v;  // undefined outside thread 0, as in CUB
    T r = s_.value[0];
    for (unsigned t = 1; t < blockDim.x; ++t) r = op(r, s_.value[t]);
    return r;
  }

 private:
  TempStorage& s_;
};

template <typename T, int kThreads>
class BlockScan {
 public:
  struct TempStorage {
    T value[kThreads];
    T prefix;
  };
  explicit BlockScan(TempStorage& storage) : s_(storage) {}
  template <typename PrefixOp>
  void InclusiveSum(T v, T& out, PrefixOp& block_prefix) {
    s_.value[threadIdx.x] = v;
    __syncthreads();
    T inclusive = s_.value[0];
    for (unsigned t = 1; t <= threadIdx.x; ++t) inclusive = inclusive + s_.value[t];
    T total = inclusive;
    for (unsigned t = threadIdx.x + 1; t < blockDim.x; ++t) total = total + s_.value[t];
    if (threadIdx.x < 32) {
      const T prefix = block_prefix(total);
      if (threadIdx.x == 0) s_.prefix = prefix;
    }
    __syncthreads();
    out = s_.prefix + inclusive;
  }

 private:
  TempStorage& s_;
};

}  // namespace emulated_cub

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
