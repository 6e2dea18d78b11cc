// Elementwise, row-wise and gather ops of the CUDA backend: the launches of
// elementwise_kernels.cuh.
#include <algorithm>

#include "cuda/cuda_backend.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/elementwise_kernels.cuh"
#include "cuda/kernels.hpp"

namespace varps::cuda {

using namespace elementwise;

void cast_to_half_precision(const float* src, size_t n, void* dst, Precision p, cudaStream_t stream) {
  if (n == 0) return;
  if (p == Precision::BF16) {
    cast_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(src, n, static_cast<__nv_bfloat16*>(dst));
  } else {
    cast_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(src, n, static_cast<__half*>(dst));
  }
  VARPS_CUDA_LAUNCHED("cast_kernel");
}

void CudaBackend::do_silu(const float* x, size_t n, float* y) {
  if (n == 0) return;
  silu_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(x, n, y);
  VARPS_CUDA_LAUNCHED("silu_kernel");
}

void CudaBackend::do_gelu_tanh_inplace(float* x, size_t n) {
  if (n == 0) return;
  gelu_tanh_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(x, n);
  VARPS_CUDA_LAUNCHED("gelu_tanh_kernel");
}

void CudaBackend::do_add_inplace(float* y, const float* x, size_t n) {
  if (n == 0) return;
  add_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(y, x, n);
  VARPS_CUDA_LAUNCHED("add_kernel");
}

void CudaBackend::do_axpby_inplace(float* y, float a, const float* x, float b, size_t n) {
  if (n == 0) return;
  axpby_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(y, a, x, b, n);
  VARPS_CUDA_LAUNCHED("axpby_kernel");
}

void CudaBackend::do_add_scaled_rows(float* y, const float* x, const float* v, int64_t v_stride, int64_t rows,
                                  int64_t tokens, int64_t C) {
  const size_t n = static_cast<size_t>(rows * tokens * C);
  if (n == 0) return;
  add_scaled_rows_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(y, x, v, v_stride, tokens, C, n);
  VARPS_CUDA_LAUNCHED("add_scaled_rows_kernel");
}

void CudaBackend::do_add_broadcast_rows(float* y, const float* v, int64_t rows, int64_t tokens, int64_t C) {
  const size_t block = static_cast<size_t>(tokens * C), n = block * static_cast<size_t>(rows);
  if (n == 0) return;
  add_broadcast_rows_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(y, v, block, n);
  VARPS_CUDA_LAUNCHED("add_broadcast_rows_kernel");
}

void CudaBackend::do_softmax_rows(float* x, int64_t n, int64_t len) {
  if (n == 0 || len == 0) return;
  const unsigned threads = softmax_threads(len);
  for (int64_t r0 = 0; r0 < n; r0 += kSoftmaxRowsPerLaunch) {
    const int64_t rows = std::min<int64_t>(n - r0, kSoftmaxRowsPerLaunch);
    softmax_rows_kernel<<<static_cast<unsigned>(rows), threads, 0, stream()>>>(x + r0 * len, len);
    VARPS_CUDA_LAUNCHED("softmax_rows_kernel");
  }
}

void CudaBackend::do_clamp(float* x, size_t n, float lo, float hi) {
  if (n == 0) return;
  clamp_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(x, n, lo, hi);
  VARPS_CUDA_LAUNCHED("clamp_kernel");
}

void CudaBackend::do_gather_rows(const float* table, int64_t C, const int32_t* idx, int64_t n, float* out) {
  const size_t total = static_cast<size_t>(n * C);
  if (total == 0) return;
  gather_rows_kernel<<<grid_for(total, kThreads), kThreads, 0, stream()>>>(table, C, idx, total, out);
  VARPS_CUDA_LAUNCHED("gather_rows_kernel");
}

void CudaBackend::do_embed_chw(const float* table, int64_t C, const int32_t* idx, int64_t N, int64_t P, float* out) {
  const size_t total = static_cast<size_t>(N * C * P);
  if (total == 0) return;
  embed_chw_kernel<<<grid_for(total, kThreads), kThreads, 0, stream()>>>(table, C, idx, P, total, out);
  VARPS_CUDA_LAUNCHED("embed_chw_kernel");
}

void CudaBackend::do_chw_to_tokens(const float* x, int64_t N, int64_t C, int64_t P, float* out) {
  const size_t total = static_cast<size_t>(N * C * P);
  if (total == 0) return;
  chw_to_tokens_kernel<<<grid_for(total, kThreads), kThreads, 0, stream()>>>(x, C, P, total, out);
  VARPS_CUDA_LAUNCHED("chw_to_tokens_kernel");
}

}  // namespace varps::cuda
