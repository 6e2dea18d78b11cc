// Transformer ops of the CUDA backend: AdaLN, the KV-cache append, the
// attention of a scale's queries over a row's cache (with the stream's
// ParScale prefix in front), and the ParScale aggregation.
#include <string>
#include <type_traits>

#include "cuda/attention_mma.hpp"
#include "cuda/cuda_backend.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/transformer_kernels.cuh"

namespace varps::cuda {

using namespace transformer;

namespace {

// Calls f(CacheT{}) with the type the KV cache is stored in: the product
// precision's.
template <typename F>
void with_cache_type(Precision p, F&& f) {
  if (p == Precision::BF16)
    f(__nv_bfloat16{});
  else if (p == Precision::F16)
    f(__half{});
  else
    f(float{});
}

template <typename CacheT>
CacheT* cache_elements(float* handle) {
  return reinterpret_cast<CacheT*>(handle);
}
template <typename CacheT>
const CacheT* cache_elements(const float* handle) {
  return reinterpret_cast<const CacheT*>(handle);
}

template <int DPL, bool EXACT, typename CacheT>
void launch_attention(cudaStream_t stream, const float* q, const CacheT* k_cache, const CacheT* v_cache, int64_t rows,
                      int64_t H, int64_t tokens, int64_t hd, int64_t capacity, int64_t len, float scale,
                      const KvPrefix& prefix, float* out) {
  const size_t smem = attention_shared_bytes(hd);
  auto kernel = attention_kernel<DPL, EXACT, CacheT>;
  if (smem > 48 * 1024)
    VARPS_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  kernel<<<attention_grid(rows, H, tokens), kWarps * 32, smem, stream>>>(
      q, k_cache, v_cache, H, tokens, static_cast<int>(hd), capacity, len, scale, prefix.k, prefix.v, prefix.tokens,
      prefix.rows_per_stream, out);
  VARPS_CUDA_LAUNCHED("attention_kernel");
}

}  // namespace

void CudaBackend::do_adaln_modulate(const float* x, int64_t rows, int64_t tokens, int64_t C, const float* scale,
                                 const float* shift, int64_t mod_stride, float eps, float* out) {
  if (rows * tokens == 0) return;
  adaln_kernel<<<static_cast<unsigned>(rows * tokens), kThreads, 0, stream()>>>(x, tokens, C, scale, shift, mod_stride,
                                                                                eps, out);
  VARPS_CUDA_LAUNCHED("adaln_kernel");
}

void CudaBackend::do_add_scaled_rows_then_adaln(float* x, const float* delta, const float* gamma, int64_t gamma_stride,
                                             int64_t rows, int64_t tokens, int64_t C, const float* scale,
                                             const float* shift, int64_t mod_stride, float eps, float* out) {
  if (rows * tokens == 0) return;
  residual_adaln_kernel<<<static_cast<unsigned>(rows * tokens), kThreads, 0, stream()>>>(
      x, delta, gamma, gamma_stride, tokens, C, scale, shift, mod_stride, eps, out);
  VARPS_CUDA_LAUNCHED("residual_adaln_kernel");
}

void CudaBackend::do_split_qkv_to_cache(const float* qkv, int64_t rows, int64_t tokens, int64_t H, int64_t hd, bool l2norm,
                                     const float* q_scale_host, float* q, float* k_cache, float* v_cache,
                                     int64_t capacity, int64_t pos) {
  if (rows * tokens * H == 0) return;
  if (H > kMaxHeads)
    throw Error("the CUDA backend supports at most " + std::to_string(kMaxHeads) + " heads (the model has " +
                std::to_string(H) + ")");
  HeadScales scales{};
  if (l2norm)
    for (int64_t h = 0; h < H; ++h) scales.v[h] = q_scale_host[h];
  const size_t threads = static_cast<size_t>(rows * tokens * H) * 32;
  with_cache_type(precision_, [&](auto tag) {
    using CacheT = decltype(tag);
    split_qkv_kernel<<<grid_for(threads, kThreads), kThreads, 0, stream()>>>(
        qkv, rows, tokens, H, hd, l2norm, scales, q, cache_elements<CacheT>(k_cache), cache_elements<CacheT>(v_cache),
        capacity, pos);
  });
  VARPS_CUDA_LAUNCHED("split_qkv_kernel");
}

void CudaBackend::do_attention(const float* q, const float* k_cache, const float* v_cache, int64_t rows, int64_t H,
                            int64_t tokens, int64_t hd, int64_t capacity, int64_t len, float scale,
                            const KvPrefix& prefix, float* out) {
  if (rows * H * tokens == 0) return;
  if (hd > 256)
    throw Error("the CUDA attention supports head_dim up to 256 (the model has " + std::to_string(hd) + ")");
  const cudaStream_t s = stream();
  with_cache_type(precision_, [&](auto tag) {
    using CacheT = decltype(tag);
    const CacheT* k = cache_elements<CacheT>(k_cache);
    const CacheT* v = cache_elements<CacheT>(v_cache);
    if constexpr (!std::is_same_v<CacheT, float>) {
      if (attention_mma_applies(hd, tokens, sizeof(CacheT))) {
        launch_attention_mma<CacheT>(s, q, k, v, rows, H, tokens, capacity, len, scale, prefix, out);
        return;
      }
    }
    with_attention_variant(hd, [&](auto dpl, auto exact) {
      launch_attention<decltype(dpl)::value, decltype(exact)::value>(s, q, k, v, rows, H, tokens, hd, capacity, len,
                                                                     scale, prefix, out);
    });
  });
}

void CudaBackend::do_interleave_streams(const float* h, int64_t P, int64_t M, int64_t C, float* z) {
  const size_t n = static_cast<size_t>(P * M * C);
  if (n == 0) return;
  interleave_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(h, P, M, C, n, z);
  VARPS_CUDA_LAUNCHED("interleave_kernel");
}

void CudaBackend::do_stream_weights(float* a, int64_t M, int64_t P, double smooth) {
  if (M * P == 0) return;
  const float keep = static_cast<float>(1.0 - smooth);
  const float floor_value = static_cast<float>(smooth / static_cast<double>(P));
  stream_weights_kernel<<<grid_for(static_cast<size_t>(M), kThreads), kThreads, 0, stream()>>>(a, M, P, keep,
                                                                                               floor_value);
  VARPS_CUDA_LAUNCHED("stream_weights_kernel");
}

void CudaBackend::do_weighted_stream_sum(const float* h, const float* w, int64_t P, int64_t M, int64_t C, float* out) {
  const size_t n = static_cast<size_t>(M * C);
  if (n == 0) return;
  weighted_stream_sum_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(h, w, P, M, C, n, out);
  VARPS_CUDA_LAUNCHED("weighted_stream_sum_kernel");
}

}  // namespace varps::cuda
