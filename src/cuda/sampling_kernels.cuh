#pragma once
// The kernels of the CUDA backend's guidance and sampling (cuda_sampling.cu
// launches them and describes the algorithm). A header so that a host
// compiler can build them too: the tests run them on the CPU through
// tests/cuda/kernel_emulator.hpp, which stands in for the two CUB pieces
// the sampler uses, BlockReduce::Reduce and BlockScan::InclusiveSum with a
// running prefix.
#include <cuda_runtime.h>

#ifdef __CUDACC__
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "backend.hpp"
#include "cuda/dynamic_shared.cuh"
#include "cuda/sampling_math.cuh"
#include "ops/philox.hpp"

namespace varps::cuda::sampling {
// Internal linkage, as kernels private to their launching file: the tests
// build their own copies.
namespace {

// ---- guidance ----

constexpr int kGuidanceRows = 64;  // rows per launch (kernel arguments hold 4 KB)
constexpr int kGuidanceThreads = 256;

struct GuidanceRows {
  int64_t uncond[kGuidanceRows];  // < 0: copy the conditional row
};

// blockIdx.y picks the row within the chunk; x is a grid-stride loop over it.
__global__ void guidance_kernel(const float* logits, int64_t lV, int64_t first_row, GuidanceRows rows,
                                const SampleJob* jobs, double ratio, float* out) {
  const int r = static_cast<int>(blockIdx.y);
  const int64_t b = first_row + r;
  const float* c = logits + b * lV;
  float* o = out + b * lV;
  const int64_t start = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t ur = rows.uncond[r];
  if (ur < 0) {
    for (int64_t i = start; i < lV; i += step) o[i] = c[i];
    return;
  }
  const float* u = logits + ur * lV;
  // t = cfg·ratio and a = float(1 + t) as the host reference rounds them.
  const double t = __dmul_rn(jobs[b].params.cfg, ratio);
  const float a = static_cast<float>(__dadd_rn(1.0, t)), tt = static_cast<float>(t);
  for (int64_t i = start; i < lV; i += step) o[i] = __fsub_rn(__fmul_rn(a, c[i]), __fmul_rn(tt, u[i]));
}

// ---- sampling ----

constexpr int kSampleJobs = 64;  // images per launch
constexpr int kSampleThreads = 256;
constexpr uint32_t kTopP = 1u, kTemperature = 2u;

struct SampleJobParams {
  uint64_t seed;
  int32_t top_k;     // 0 unless 0 < top_k < V
  float p_limit;     // float(1 - top_p)
  float inv_temp;    // float(1 / temperature)
  uint32_t flags;    // kTopP, kTemperature
};

// What sample_token (ops/sampler.cpp) derives from the job, rounded as it is.
__device__ SampleJobParams job_params(const SampleJob& job, int64_t V) {
  const SamplingParams& sp = job.params;
  SampleJobParams p;
  p.seed = job.seed;
  p.top_k = sp.top_k > 0 && sp.top_k < V ? sp.top_k : 0;
  p.p_limit = static_cast<float>(__dsub_rn(1.0, sp.top_p));
  p.inv_temp = static_cast<float>(__ddiv_rn(1.0, sp.temperature));
  p.flags = (sp.top_p > 0.0 ? kTopP : 0u) | (sp.temperature != 1.0 ? kTemperature : 0u);
  return p;
}

struct ArgMax {
  float v;
  int64_t i;
};

// The greater value; on equal values the smaller index, which is the CPU's
// first maximum (it updates on strict >). NaN never gets in: the local scans
// skip it as the CPU's comparison does.
struct ArgMaxOp {
  __device__ ArgMax operator()(const ArgMax& a, const ArgMax& b) const {
    return (b.v > a.v || (b.v == a.v && b.i < a.i)) ? b : a;
  }
};
struct SumOp {
  template <typename T>
  __device__ T operator()(const T& a, const T& b) const { return a + b; }
};
struct MaxOp {
  __device__ int64_t operator()(int64_t a, int64_t b) const { return b > a ? b : a; }
};
struct MinOp {
  __device__ int64_t operator()(int64_t a, int64_t b) const { return b < a ? b : a; }
};

// Seeds each tile of a tiled block scan with the sum of the tiles before it.
// CUB calls it from the first warp only; only that warp's copy needs to be
// current.
template <typename T>
struct RunningPrefix {
  T total;
  __device__ T operator()(T tile_aggregate) {
    const T before = total;
    total += tile_aggregate;
    return before;
  }
};

// CUB's block-wide reduction and scan; in a host build, their emulation
// (tests/cuda/kernel_emulator.hpp).
#ifdef __CUDACC__
template <typename T>
using BlockReduce = cub::BlockReduce<T, kSampleThreads>;
template <typename T>
using BlockScan = cub::BlockScan<T, kSampleThreads>;
#else
template <typename T>
using BlockReduce = emulated_cub::BlockReduce<T, kSampleThreads>;
template <typename T>
using BlockScan = emulated_cub::BlockScan<T, kSampleThreads>;
#endif

struct SampleShared {
  union {
    BlockReduce<float>::TempStorage reduce_f;
    BlockReduce<double>::TempStorage reduce_d;
    BlockReduce<int64_t>::TempStorage reduce_i;
    BlockReduce<ArgMax>::TempStorage reduce_arg;
    BlockScan<float>::TempStorage scan_f;
    BlockScan<double>::TempStorage scan_d;
  } cub;
  float f;
  double d;
  int64_t i;
  ArgMax arg;
};

// A block reduction every thread gets the result of. The second barrier lets
// the next call reuse the temporary storage and the slot.
template <typename T, typename Op>
__device__ T all_reduce(T v, Op op, typename BlockReduce<T>::TempStorage& tmp, T& slot) {
  const T r = BlockReduce<T>(tmp).Reduce(v, op);
  if (threadIdx.x == 0) slot = r;
  __syncthreads();
  const T out = slot;
  __syncthreads();
  return out;
}

// Ascending bitonic sort of n (a power of two) keys; every thread of the block
// takes part. Stage (k, j) compares a with a + j, a having bit j clear.
__device__ void bitonic_sort(uint64_t* s, uint32_t n) {
  for (uint32_t k = 2; k <= n; k <<= 1)
    for (uint32_t j = k >> 1; j > 0; j >>= 1) {
      for (uint32_t t = threadIdx.x; t < n / 2; t += kSampleThreads) {
        const uint32_t a = 2 * t - (t & (j - 1)), b = a + j;
        const uint64_t x = s[a], y = s[b];
        if ((x > y) == ((a & k) == 0)) {
          s[a] = y;
          s[b] = x;
        }
      }
      __syncthreads();
    }
}

__device__ inline float key_value(uint64_t key) { return order_key_float(static_cast<uint32_t>(key >> 32)); }

// One block per token row (b, i): blockIdx.x = (b - first_b)·l + i. The row is
// clobbered as the CPU's is: temperature applied, filtered entries -inf.
// Dynamic shared memory: pad_V keys when some job of the request filters
// (sample()'s `filters`; the CPU refuses a call that says none while one does).
__global__ void __launch_bounds__(kSampleThreads)
    sample_kernel(float* logits, int64_t first_b, int64_t l, int64_t V, uint32_t pad_V, int scale_index,
                  const SampleJob* jobs, int32_t* idx) {
  VARPS_DYNAMIC_SHARED(uint64_t, keys);
  __shared__ SampleShared sh;
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  const int tid = static_cast<int>(threadIdx.x);
  // 32-bit division: the host keeps a launch's rows below 2^31, and a 64-bit
  // one is a subroutine call.
  const uint32_t l32 = static_cast<uint32_t>(l);
  const int64_t jb = blockIdx.x / l32, i = blockIdx.x % l32;
  const int64_t row = (first_b + jb) * l + i;
  float* x = logits + row * V;
  const SampleJobParams job = job_params(jobs[first_b + jb], V);
  const bool top_k = job.top_k > 0, top_p = (job.flags & kTopP) != 0, temp = (job.flags & kTemperature) != 0;
  const bool sort = top_k || top_p;

  // Temperature first, as on the CPU, so the keys sort the scaled values.
  if (sort || temp) {
    const int64_t n = sort ? static_cast<int64_t>(pad_V) : V;
    for (int64_t k = tid; k < n; k += kSampleThreads) {
      if (k < V) {
        float v = x[k];
        if (temp) {
          v = __fmul_rn(v, job.inv_temp);
          x[k] = v;
        }
        if (sort) keys[k] = (static_cast<uint64_t>(float_order_key(v)) << 32) | static_cast<uint32_t>(k);
      } else {
        keys[k] = ~uint64_t{0};  // padding sorts after every real key (whose index is < 2^32 - 1)
      }
    }
    __syncthreads();
  }

  if (sort) {
    bitonic_sort(keys, pad_V);
    // Kept entries: above -inf and, under top-k, >= the k-th largest. Both are
    // bounds on the key's value half, so the kept set is the sorted suffix
    // from `lo`, in the (value, index) order of the CPU's stable sort.
    uint32_t floor_key = float_order_key(kNegInf) + 1u;
    if (top_k) {
      const uint64_t kth_key = keys[V - job.top_k];
      const float kth = key_value(kth_key);
      floor_key = max(floor_key, static_cast<uint32_t>(kth_key >> 32));
      for (int64_t k = tid; k < V; k += kSampleThreads)
        if (x[k] < kth) x[k] = kNegInf;
    }
    if (top_p) {
      // Every thread runs the same binary search on the same keys: no barrier.
      const uint64_t bound = static_cast<uint64_t>(floor_key) << 32;
      int64_t lo = 0, hi = V;
      while (lo < hi) {
        const int64_t mid = (lo + hi) / 2;
        if (keys[mid] < bound)
          lo = mid + 1;
        else
          hi = mid;
      }
      if (lo < V) {
        const float mx = key_value(keys[V - 1]);
        float part = 0.0f;
        for (int64_t p = lo + tid; p < V; p += kSampleThreads) part += expf(__fsub_rn(key_value(keys[p]), mx));
        const float sum = all_reduce(part, SumOp{}, sh.cub.reduce_f, sh.f);
        // Cumulative probability in ascending order; an entry whose cumulative
        // sum is <= 1 - p goes, never the last (largest) one. Tested entry by
        // entry, as the CPU does, rather than as a prefix: a parallel scan
        // need not be monotone to the last bit.
        RunningPrefix<float> prefix{0.0f};
        for (int64_t base = lo; base < V; base += kSampleThreads) {
          const int64_t p = base + tid;
          const float q = p < V ? __fdiv_rn(expf(__fsub_rn(key_value(keys[p]), mx)), sum) : 0.0f;
          float cum;
          BlockScan<float>(sh.cub.scan_f).InclusiveSum(q, cum, prefix);
          if (p < V - 1 && cum <= job.p_limit) x[static_cast<uint32_t>(keys[p])] = kNegInf;
          __syncthreads();
        }
      }
    }
    __syncthreads();
  }

  // The draw, in vocabulary index order as on the CPU.
  ArgMax best{kNegInf, std::numeric_limits<int64_t>::max()};
  for (int64_t k = tid; k < V; k += kSampleThreads) {
    const float v = x[k];
    if (v > best.v) best = {v, k};
  }
  best = all_reduce(best, ArgMaxOp{}, sh.cub.reduce_arg, sh.arg);
  if (best.i == std::numeric_limits<int64_t>::max()) {
    // Every entry -inf (or NaN): the CPU returns its initial arg, 0.
    if (tid == 0) idx[row] = 0;
    return;
  }
  const double mx = best.v;
  double part = 0.0;
  int64_t last = -1;  // the last index with p != 0, the CPU's answer when the walk runs out
  for (int64_t k = tid; k < V; k += kSampleThreads) {
    const float v = x[k];
    const double p = v == kNegInf ? 0.0 : exp(static_cast<double>(v) - mx);
    part += p;
    if (p != 0.0) last = k;
  }
  const double total = all_reduce(part, SumOp{}, sh.cub.reduce_d, sh.d);
  last = all_reduce(last, MaxOp{}, sh.cub.reduce_i, sh.i);
  const double target = token_uniform(job.seed, scale_index, i) * total;
  // First index whose inclusive cumulative probability exceeds the target;
  // tiles stop at the first that holds one.
  int64_t chosen = -1;
  RunningPrefix<double> prefix{0.0};
  for (int64_t base = 0; base < V; base += kSampleThreads) {
    const int64_t k = base + tid;
    double p = 0.0;
    if (k < V) {
      const float v = x[k];
      if (v != kNegInf) p = exp(static_cast<double>(v) - mx);
    }
    double cum;
    BlockScan<double>(sh.cub.scan_d).InclusiveSum(p, cum, prefix);
    const bool hit = p != 0.0 && cum > target;
    // Also the barrier before the scan storage is reused.
    if (__syncthreads_or(hit)) {
      chosen = all_reduce(hit ? k : std::numeric_limits<int64_t>::max(), MinOp{}, sh.cub.reduce_i, sh.i);
      break;
    }
  }
  if (chosen < 0) chosen = last >= 0 ? last : best.i;
  if (tid == 0) idx[row] = static_cast<int32_t>(chosen);
}

// ---- launch shapes ----

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// guidance_kernel's blocks along a row of lV logits: about four elements
// per thread, the grid-stride loop covering the rest. Its grid is
// (guidance_blocks_x(lV), rows of the chunk), chunks of kGuidanceRows.
inline unsigned guidance_blocks_x(int64_t lV) {
  return static_cast<unsigned>(std::clamp<int64_t>(ceil_div(lV, kGuidanceThreads * 4), 1, 4096));
}

// How sample_kernel sorts a vocabulary of V: `keys`, its pad_V argument, is
// V padded to a power of two when some job of the request filters
// (sample()'s `filters`), else 0 and there is no sort. The keys are its
// dynamic shared memory.
struct SampleSort {
  uint32_t keys;
  size_t shared_bytes() const { return size_t{keys} * sizeof(uint64_t); }
};
inline SampleSort sample_sort(int64_t V, bool filters) {
  uint32_t pad_V = 1;
  while (pad_V < V) pad_V <<= 1;
  return {filters ? pad_V : 0u};
}

// sample_kernel's blocks for `images` images of l token rows: one per row.
inline unsigned sample_blocks(int64_t images, int64_t l) { return static_cast<unsigned>(images * l); }

}  // namespace
}  // namespace varps::cuda::sampling
