#pragma once
// The CUDA backend's element-wise, row-wise and gather kernels, and the
// conversion of float32 operands to bf16/fp16 (cuda_elementwise.cu launches
// them). Products and sums use the round-to-nearest intrinsics where the
// CPU reference spells out an order (it is built with -ffp-contract=off),
// so nvcc does not fuse them into multiply-adds and the two backends round
// alike. A header so that a host compiler can build them too: the tests run
// them on the CPU through tests/cuda/kernel_emulator.hpp.
#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "cuda/block_reduce.cuh"
#include "cuda/storage_types.cuh"

namespace varps::cuda::elementwise {
// Internal linkage, as kernels private to their launching file: the tests
// build their own copies.
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

#undef VARPS_GRID_STRIDE

// softmax_rows_kernel's block for rows of len elements: whole warps, at
// most 256 threads.
inline unsigned softmax_threads(int64_t len) { return len >= 256 ? 256 : 32 * static_cast<unsigned>((len + 31) / 32); }

// Rows per softmax_rows_kernel launch: one block each, and a grid holds
// fewer than 2^31 blocks.
constexpr int64_t kSoftmaxRowsPerLaunch = 2147483647;

}  // namespace
}  // namespace varps::cuda::elementwise
