// Elementwise, row-wise and gather ops of the CUDA backend. Products and
// sums use the round-to-nearest intrinsics where the CPU reference spells
// out an order (it is built with -ffp-contract=off), so nvcc does not fuse
// them into multiply-adds and the two backends round alike.
#include <cmath>

#include "cuda/block_reduce.cuh"
#include "cuda/cuda_backend.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/kernels.hpp"
#include "cuda/storage_types.cuh"

namespace varps::cuda {

namespace {

constexpr unsigned kThreads = 256;

#define VARPS_GRID_STRIDE(i, n) \
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < (n); i += size_t{gridDim.x} * blockDim.x)

__global__ void silu_kernel(const float* x, size_t n, float* y) {
  VARPS_GRID_STRIDE(i, n) {
    const float v = x[i];
    y[i] = __fdiv_rn(v, __fadd_rn(1.0f, expf(-v)));
  }
}

__global__ void gelu_tanh_kernel(float* x, size_t n) {
  const float k = 0.7978845608028654f;
  VARPS_GRID_STRIDE(i, n) {
    const float v = x[i];
    const float cube = __fmul_rn(__fmul_rn(v, v), v);
    const float inner = __fmul_rn(k, __fadd_rn(v, __fmul_rn(0.044715f, cube)));
    x[i] = __fmul_rn(__fmul_rn(0.5f, v), __fadd_rn(1.0f, tanhf(inner)));
  }
}

__global__ void add_kernel(float* y, const float* x, size_t n) {
  VARPS_GRID_STRIDE(i, n) y[i] = __fadd_rn(y[i], x[i]);
}

__global__ void axpby_kernel(float* y, float a, const float* x, float b, size_t n) {
  VARPS_GRID_STRIDE(i, n) y[i] = __fadd_rn(__fmul_rn(y[i], a), __fmul_rn(x[i], b));
}

// y[r, i, c] += x[r, i, c] · v[r·stride + c]
__global__ void add_scaled_rows_kernel(float* y, const float* x, const float* v, int64_t v_stride, int64_t tokens,
                                       int64_t C, size_t n) {
  VARPS_GRID_STRIDE(e, n) {
    const int64_t c = static_cast<int64_t>(e % C);
    const int64_t r = static_cast<int64_t>(e / C) / tokens;
    y[e] = __fadd_rn(y[e], __fmul_rn(x[e], v[r * v_stride + c]));
  }
}

__global__ void add_broadcast_rows_kernel(float* y, const float* v, size_t block, size_t n) {
  VARPS_GRID_STRIDE(e, n) y[e] = __fadd_rn(y[e], v[e % block]);
}

// One block per row: max, then exp and sum, then scale (as the CPU).
__global__ void softmax_rows_kernel(float* x, int64_t len) {
  __shared__ float red[32];
  float* row = x + blockIdx.x * len;
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < len; j += blockDim.x) mx = fmaxf(mx, row[j]);
  mx = block_max(mx, red, -INFINITY);
  float sum = 0.0f;
  for (int64_t j = threadIdx.x; j < len; j += blockDim.x) {
    const float e = expf(row[j] - mx);
    row[j] = e;
    sum += e;
  }
  sum = block_sum(sum, red);
  const float inv = __fdiv_rn(1.0f, sum);
  for (int64_t j = threadIdx.x; j < len; j += blockDim.x) row[j] = __fmul_rn(row[j], inv);
}

__global__ void clamp_kernel(float* x, size_t n, float lo, float hi) {
  VARPS_GRID_STRIDE(i, n) x[i] = fminf(fmaxf(x[i], lo), hi);
}

__global__ void gather_rows_kernel(const float* table, int64_t C, const int32_t* idx, size_t n, float* out) {
  VARPS_GRID_STRIDE(e, n) {
    const int64_t r = static_cast<int64_t>(e) / C, c = static_cast<int64_t>(e) % C;
    out[e] = table[static_cast<int64_t>(idx[r]) * C + c];
  }
}

// out[n, c, p] = table[idx[n, p], c]
__global__ void embed_chw_kernel(const float* table, int64_t C, const int32_t* idx, int64_t P, size_t total,
                                 float* out) {
  VARPS_GRID_STRIDE(e, total) {
    const int64_t p = static_cast<int64_t>(e) % P;
    const int64_t c = (static_cast<int64_t>(e) / P) % C;
    const int64_t n = static_cast<int64_t>(e) / (P * C);
    out[e] = table[static_cast<int64_t>(idx[n * P + p]) * C + c];
  }
}

// out[n, p, c] = x[n, c, p]
__global__ void chw_to_tokens_kernel(const float* x, int64_t C, int64_t P, size_t total, float* out) {
  VARPS_GRID_STRIDE(e, total) {
    const int64_t c = static_cast<int64_t>(e) % C;
    const int64_t p = (static_cast<int64_t>(e) / C) % P;
    const int64_t n = static_cast<int64_t>(e) / (C * P);
    out[e] = x[(n * C + c) * P + p];
  }
}

template <typename T>
__global__ void cast_kernel(const float* src, size_t n, T* dst) {
  VARPS_GRID_STRIDE(i, n) dst[i] = to_stored<T>(src[i]);
}

}  // namespace

void cast_to_half_precision(const float* src, size_t n, void* dst, Precision p, cudaStream_t stream) {
  if (n == 0) return;
  if (p == Precision::BF16) {
    cast_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(src, n, static_cast<__nv_bfloat16*>(dst));
  } else {
    cast_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(src, n, static_cast<__half*>(dst));
  }
  VARPS_CUDA_LAUNCHED("cast_kernel");
}

void CudaBackend::silu(const float* x, size_t n, float* y) {
  if (n == 0) return;
  silu_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(x, n, y);
  VARPS_CUDA_LAUNCHED("silu_kernel");
}

void CudaBackend::gelu_tanh_inplace(float* x, size_t n) {
  if (n == 0) return;
  gelu_tanh_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(x, n);
  VARPS_CUDA_LAUNCHED("gelu_tanh_kernel");
}

void CudaBackend::add_inplace(float* y, const float* x, size_t n) {
  if (n == 0) return;
  add_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(y, x, n);
  VARPS_CUDA_LAUNCHED("add_kernel");
}

void CudaBackend::axpby_inplace(float* y, float a, const float* x, float b, size_t n) {
  if (n == 0) return;
  axpby_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(y, a, x, b, n);
  VARPS_CUDA_LAUNCHED("axpby_kernel");
}

void CudaBackend::add_scaled_rows(float* y, const float* x, const float* v, int64_t v_stride, int64_t rows,
                                  int64_t tokens, int64_t C) {
  const size_t n = static_cast<size_t>(rows * tokens * C);
  if (n == 0) return;
  add_scaled_rows_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(y, x, v, v_stride, tokens, C, n);
  VARPS_CUDA_LAUNCHED("add_scaled_rows_kernel");
}

void CudaBackend::add_broadcast_rows(float* y, const float* v, int64_t rows, int64_t tokens, int64_t C) {
  const size_t block = static_cast<size_t>(tokens * C), n = block * static_cast<size_t>(rows);
  if (n == 0) return;
  add_broadcast_rows_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(y, v, block, n);
  VARPS_CUDA_LAUNCHED("add_broadcast_rows_kernel");
}

void CudaBackend::softmax_rows(float* x, int64_t n, int64_t len) {
  if (n == 0 || len == 0) return;
  const unsigned threads = len >= 256 ? 256 : 32 * static_cast<unsigned>((len + 31) / 32);
  for (int64_t r0 = 0; r0 < n; r0 += 2147483647) {
    const int64_t rows = std::min<int64_t>(n - r0, 2147483647);
    softmax_rows_kernel<<<static_cast<unsigned>(rows), threads, 0, stream()>>>(x + r0 * len, len);
    VARPS_CUDA_LAUNCHED("softmax_rows_kernel");
  }
}

void CudaBackend::clamp(float* x, size_t n, float lo, float hi) {
  if (n == 0) return;
  clamp_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(x, n, lo, hi);
  VARPS_CUDA_LAUNCHED("clamp_kernel");
}

void CudaBackend::gather_rows(const float* table, int64_t C, const int32_t* idx, int64_t n, float* out) {
  const size_t total = static_cast<size_t>(n * C);
  if (total == 0) return;
  gather_rows_kernel<<<grid_for(total, kThreads), kThreads, 0, stream()>>>(table, C, idx, total, out);
  VARPS_CUDA_LAUNCHED("gather_rows_kernel");
}

void CudaBackend::embed_chw(const float* table, int64_t C, const int32_t* idx, int64_t N, int64_t P, float* out) {
  const size_t total = static_cast<size_t>(N * C * P);
  if (total == 0) return;
  embed_chw_kernel<<<grid_for(total, kThreads), kThreads, 0, stream()>>>(table, C, idx, P, total, out);
  VARPS_CUDA_LAUNCHED("embed_chw_kernel");
}

void CudaBackend::chw_to_tokens(const float* x, int64_t N, int64_t C, int64_t P, float* out) {
  const size_t total = static_cast<size_t>(N * C * P);
  if (total == 0) return;
  chw_to_tokens_kernel<<<grid_for(total, kThreads), kThreads, 0, stream()>>>(x, C, P, total, out);
  VARPS_CUDA_LAUNCHED("chw_to_tokens_kernel");
}

}  // namespace varps::cuda
