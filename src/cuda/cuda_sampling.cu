// Classifier-free guidance and token sampling on device, computing what the
// CPU reference computes (CpuBackend::guidance, ops/sampler.cpp) so that a
// seed gives the same tokens on either backend.
//
// Guidance is elementwise; its products and difference use _rn intrinsics
// because a contraction to FMA would round differently from the CPU.
//
// Sampling runs one thread block per token row. Top-k needs the exact k-th
// largest value and top-p needs the kept entries in (value, index) order, the
// order std::stable_sort gives on the CPU; one bitonic sort in shared memory
// of 64-bit keys (order-preserving float bits above, index below) gives both,
// and is branch-free and deterministic. The kept entries are then a suffix of
// the sorted keys, on which top-p is a block scan. The final draw walks the
// vocabulary in index order, as the CPU does, with a double-precision block
// scan. Block sums associate differently from the CPU's sequential loops, so
// an entry sitting exactly on a top-p or draw boundary may go the other way;
// everything else is the reference algorithm step for step.
//
// Per-image parameters (seed, cfg, top-k, top-p, temperature) are read from
// device memory, where the generation writes them once per request before
// its scales run: the sampling step is captured in a CUDA graph, whose
// kernel arguments are frozen, so only what is the same for every request
// of a shape (the rows, the scale) travels as an argument. The kernels turn
// the parameters into what they use (t·cond products, 1 − top_p, 1 / T)
// with _rn intrinsics, in the host's double-precision order.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>

#include "cuda/cuda_backend.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/device_heap.hpp"
#include "cuda/sampling_kernels.cuh"

namespace varps::cuda {

using namespace sampling;

void CudaBackend::do_guidance(const float* logits, int64_t B, int64_t lV, const SampleJob* jobs, double ratio,
                           const int64_t* uncond_row, float* out) {
  if (B <= 0 || lV <= 0) return;
  const unsigned blocks_x = guidance_blocks_x(lV);
  for (int64_t b0 = 0; b0 < B; b0 += kGuidanceRows) {
    const int n = static_cast<int>(std::min<int64_t>(kGuidanceRows, B - b0));
    GuidanceRows rows{};
    for (int r = 0; r < n; ++r) rows.uncond[r] = uncond_row[b0 + r];
    const dim3 grid(blocks_x, static_cast<unsigned>(n));
    guidance_kernel<<<grid, kGuidanceThreads, 0, stream()>>>(logits, lV, b0, rows, jobs, ratio, out);
    VARPS_CUDA_LAUNCHED("guidance_kernel");
  }
}

void CudaBackend::do_sample(float* logits, int64_t B, int64_t l, int64_t V, const SampleJob* jobs, bool filters,
                         int scale_index, int32_t* idx) {
  if (V < 1 || V > std::numeric_limits<int32_t>::max())
    throw Error("CUDA sample: vocabulary size V=" + std::to_string(V) + " out of range");
  if (B <= 0 || l <= 0) return;
  if (l > std::numeric_limits<int32_t>::max() / kSampleJobs)
    throw Error("CUDA sample: " + std::to_string(l) + " tokens per image is more than one launch can hold");

  const SampleSort sort = sample_sort(V, filters);
  if (sample_smem_limit_ < 0) {  // once per backend: the queries cost more than a launch
    int optin = 0;
    VARPS_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, heap_->device));
    cudaFuncAttributes attr{};
    VARPS_CUDA_CHECK(cudaFuncGetAttributes(&attr, sample_kernel));
    sample_smem_limit_ = static_cast<int64_t>(optin) - static_cast<int64_t>(attr.sharedSizeBytes);
  }
  const int64_t max_dynamic = sample_smem_limit_;
  const int64_t smem = static_cast<int64_t>(sort.shared_bytes());
  if (smem > max_dynamic)
    throw Error("CUDA sample: top-k/top-p over a vocabulary of V=" + std::to_string(V) + " sorts " +
                std::to_string(sort.keys) + " keys in shared memory (" + std::to_string(smem) +
                " bytes), more than this device's " + std::to_string(max_dynamic) + " bytes per block");
  if (smem > 48 * 1024)
    VARPS_CUDA_CHECK(
        cudaFuncSetAttribute(sample_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));

  // Chunks of images keep a launch's blocks below 2^31.
  for (int64_t b0 = 0; b0 < B; b0 += kSampleJobs) {
    const int64_t n = std::min<int64_t>(kSampleJobs, B - b0);
    sample_kernel<<<sample_blocks(n, l), kSampleThreads, sort.shared_bytes(), stream()>>>(logits, b0, l, V, sort.keys,
                                                                                          scale_index, jobs, idx);
    VARPS_CUDA_LAUNCHED("sample_kernel");
  }
}

}  // namespace varps::cuda
