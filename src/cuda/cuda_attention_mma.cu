// Launches the tensor-core attention (attention_mma_kernel.cuh).
#include <cstdint>

#include "cuda/attention_mma.hpp"
#include "cuda/attention_mma_kernel.cuh"
#include "cuda/cuda_check.hpp"

namespace varps::cuda {

bool attention_mma_applies(int64_t hd, int64_t tokens, size_t cache_element_bytes) {
  return hd == attention_mma::kHd && tokens >= kMinMmaQueries && cache_element_bytes == 2;
}

template <typename T>
void launch_attention_mma(cudaStream_t stream, const float* q, const T* k_cache, const T* v_cache, int64_t rows,
                          int64_t H, int64_t tokens, int64_t capacity, int64_t len, float scale, const KvPrefix& prefix,
                          float* out) {
  attention_mma::attention_mma_kernel<T>
      <<<attention_mma::grid_of(rows, H, tokens), attention_mma::kThreads, 0, stream>>>(
          q, k_cache, v_cache, H, tokens, capacity, len, scale, prefix.k, prefix.v, prefix.tokens,
          prefix.rows_per_stream, out);
  VARPS_CUDA_LAUNCHED("attention_mma_kernel");
}

template void launch_attention_mma<__nv_bfloat16>(cudaStream_t, const float*, const __nv_bfloat16*,
                                                  const __nv_bfloat16*, int64_t, int64_t, int64_t, int64_t, int64_t,
                                                  float, const KvPrefix&, float*);
template void launch_attention_mma<__half>(cudaStream_t, const float*, const __half*, const __half*, int64_t, int64_t,
                                           int64_t, int64_t, int64_t, float, const KvPrefix&, float*);

}  // namespace varps::cuda
