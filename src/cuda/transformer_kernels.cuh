#pragma once
// The kernels of the CUDA backend's transformer ops (cuda_transformer.cu
// launches them): AdaLN, the KV-cache append, the SIMT attention and the
// ParScale aggregation. A header so that a host compiler can build them too:
// the tests run them on the CPU through tests/cuda/kernel_emulator.hpp.
#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "cuda/block_reduce.cuh"
#include "cuda/dynamic_shared.cuh"
#include "cuda/storage_types.cuh"

namespace varps::cuda::transformer {
// Internal linkage, as kernels private to their launching file: the tests
// build their own copies.
namespace {

constexpr unsigned kThreads = 256;  // per block of the per-token and element-wise kernels

// One token's LN(x)·(1 + scale) + shift by one block: mean and variance in
// two passes accumulated in double, like the CPU, so the normalisation does
// not lose digits to cancellation; then the modulation with the CPU's
// rounding order. Each thread reads and writes the channels c ≡ threadIdx.x
// (mod blockDim.x) only, so out may be an array the caller read those from.
__device__ void modulate_token(const float* xx, int64_t C, const float* sc, const float* sh, float eps, float* yy,
                               double* red) {
  double s = 0.0;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) s += xx[c];
  const double mean = block_sum(s, red) / static_cast<double>(C);
  double v = 0.0;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    const double d = xx[c] - mean;
    v += d * d;
  }
  const double var = block_sum(v, red) / static_cast<double>(C);
  const float m = static_cast<float>(mean);
  const float rstd = static_cast<float>(1.0 / sqrt(var + static_cast<double>(eps)));
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
    yy[c] = __fadd_rn(__fmul_rn(__fmul_rn(__fsub_rn(xx[c], m), rstd), __fadd_rn(1.0f, sc[c])), sh[c]);
}

// One block per token.
__global__ void adaln_kernel(const float* x, int64_t tokens, int64_t C, const float* scale, const float* shift,
                             int64_t mod_stride, float eps, float* out) {
  __shared__ double red[32];
  const int64_t row_token = blockIdx.x;
  const int64_t r = row_token / tokens;
  modulate_token(x + row_token * C, C, scale + r * mod_stride, shift + r * mod_stride, eps, out + row_token * C, red);
}

// One block per token: x += delta·gamma with add_scaled_rows_kernel's
// rounding, then modulate_token on the new x. A thread adds the channels it
// later normalises, and reads delta's before it writes out's, so out may be
// delta.
__global__ void residual_adaln_kernel(float* x, const float* delta, const float* gamma, int64_t gamma_stride,
                                      int64_t tokens, int64_t C, const float* scale, const float* shift,
                                      int64_t mod_stride, float eps, float* out) {
  __shared__ double red[32];
  const int64_t row_token = blockIdx.x;
  const int64_t r = row_token / tokens;
  float* xx = x + row_token * C;
  const float* dd = delta + row_token * C;
  const float* g = gamma + r * gamma_stride;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) xx[c] = __fadd_rn(xx[c], __fmul_rn(dd[c], g[c]));
  modulate_token(xx, C, scale + r * mod_stride, shift + r * mod_stride, eps, out + row_token * C, red);
}

constexpr int kMaxHeads = 64;
struct HeadScales {
  float v[kMaxHeads];
};

// One warp per (row, token, head), grid-stride over them: lanes over the
// head dimension. Keys and values are rounded to CacheT as they are stored.
template <typename CacheT>
__global__ void split_qkv_kernel(const float* qkv, int64_t rows, int64_t tokens, int64_t H, int64_t hd, bool l2norm,
                                 HeadScales q_scale, float* q, CacheT* k_cache, CacheT* v_cache, int64_t capacity,
                                 int64_t pos) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = rows * tokens * H;
  const int64_t warp_stride = (int64_t{gridDim.x} * blockDim.x) >> 5;
  for (int64_t warp = (blockIdx.x * int64_t{blockDim.x} + threadIdx.x) >> 5; warp < warps; warp += warp_stride) {
    const int64_t h = warp % H, i = (warp / H) % tokens, r = warp / (H * tokens);
    const int64_t C = H * hd;
    const float* src = qkv + (r * tokens + i) * 3 * C + h * hd;
    float* qd = q + ((r * H + h) * tokens + i) * hd;
    CacheT* kd = k_cache + ((r * H + h) * capacity + pos + i) * hd;
    CacheT* vd = v_cache + ((r * H + h) * capacity + pos + i) * hd;
    if (l2norm) {
      float nq = 0.0f, nk = 0.0f;
      for (int64_t d = lane; d < hd; d += 32) {
        nq += src[d] * src[d];
        nk += src[C + d] * src[C + d];
      }
      nq = warp_sum(nq);
      nk = warp_sum(nk);
      // F.normalize: x / max(‖x‖, 1e-12)
      const float dq = fmaxf(sqrtf(nq), 1e-12f), dk = fmaxf(sqrtf(nk), 1e-12f);
      const float mul = q_scale.v[h];
      for (int64_t d = lane; d < hd; d += 32) {
        qd[d] = __fmul_rn(__fdiv_rn(src[d], dq), mul);
        kd[d] = to_stored<CacheT>(__fdiv_rn(src[C + d], dk));
      }
    } else {
      for (int64_t d = lane; d < hd; d += 32) {
        qd[d] = src[d];
        kd[d] = to_stored<CacheT>(src[C + d]);
      }
    }
    for (int64_t d = lane; d < hd; d += 32) vd[d] = to_stored<CacheT>(src[2 * C + d]);
  }
}

constexpr int kWarps = 8;     // queries per block, one per warp
constexpr int kKeyTile = 32;  // keys per tile, one per lane when scoring

// Attention of `tokens` queries over T prefix keys then `len` cached keys,
// for one (row, head) and kWarps queries per block. K and V tiles of 32
// keys go through shared memory (rows padded by one float, so lane j
// reading key j hits its own bank); each lane scores one key of the tile,
// and the warp keeps an online softmax (running max and sum) so the scores
// never leave registers. DPL: head dimensions per lane (hd = 32·DPL on the
// fast path; general hd up to 32·DPL with bounds checks). The cache holds
// CacheT, the prefix float32; both are widened to float32 in the tiles.
template <int DPL, bool EXACT, typename CacheT>
__global__ void attention_kernel(const float* q, const CacheT* k_cache, const CacheT* v_cache, int64_t H,
                                 int64_t tokens, int hd, int64_t capacity, int64_t len, float scale,
                                 const float* prefix_k, const float* prefix_v, int64_t T, int64_t rows_per_stream,
                                 float* out) {
  VARPS_DYNAMIC_SHARED(float, smem);
  const int stride = hd + 1;
  float* ks = smem;                    // [kKeyTile][hd + 1]
  float* vs = ks + kKeyTile * stride;  // [kKeyTile][hd + 1]
  float* qs = vs + kKeyTile * stride;  // [kWarps][hd]
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t h = blockIdx.y, r = blockIdx.z;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  const bool active = i < tokens;
  const int64_t stream_id = T > 0 ? r / rows_per_stream : 0;
  const CacheT* kc = k_cache + (r * H + h) * capacity * hd;
  const CacheT* vc = v_cache + (r * H + h) * capacity * hd;
  const float* pk = T > 0 ? prefix_k + (stream_id * H + h) * T * hd : nullptr;
  const float* pv = T > 0 ? prefix_v + (stream_id * H + h) * T * hd : nullptr;

  float* qw = qs + warp * hd;
  if (active)
    for (int d = lane; d < hd; d += 32) qw[d] = q[((r * H + h) * tokens + i) * hd + d];
  float acc[DPL];
#pragma unroll
  for (int t = 0; t < DPL; ++t) acc[t] = 0.0f;
  float run_max = -INFINITY, run_sum = 0.0f;

  const int64_t width = T + len;
  for (int64_t j0 = 0; j0 < width; j0 += kKeyTile) {
    const int tile = width - j0 < kKeyTile ? static_cast<int>(width - j0) : kKeyTile;
    __syncthreads();  // the previous tile is consumed (and qw is written)
    for (int e = threadIdx.x; e < tile * hd; e += blockDim.x) {
      const int jj = e / hd, d = e % hd;
      const int64_t j = j0 + jj;
      if (j < T) {
        ks[jj * stride + d] = pk[j * hd + d];
        vs[jj * stride + d] = pv[j * hd + d];
      } else {
        ks[jj * stride + d] = from_stored(kc[(j - T) * hd + d]);
        vs[jj * stride + d] = from_stored(vc[(j - T) * hd + d]);
      }
    }
    __syncthreads();
    if (!active) continue;
    float s = -INFINITY;
    if (lane < tile) {
      const float* kr = ks + lane * stride;
      float dot = 0.0f;
      if (EXACT) {
#pragma unroll
        for (int d = 0; d < DPL * 32; ++d) dot += qw[d] * kr[d];
      } else {
        for (int d = 0; d < hd; ++d) dot += qw[d] * kr[d];
      }
      s = dot * scale;
    }
    const float tile_max = warp_max(s);
    const float new_max = fmaxf(run_max, tile_max);
    const float p = lane < tile ? expf(s - new_max) : 0.0f;
    const float correction = expf(run_max - new_max);  // 0 on the first tile
    run_sum = run_sum * correction + warp_sum(p);
    run_max = new_max;
#pragma unroll
    for (int t = 0; t < DPL; ++t) acc[t] *= correction;
    for (int jj = 0; jj < tile; ++jj) {
      const float pj = __shfl_sync(0xffffffffu, p, jj);
      const float* vr = vs + jj * stride;
#pragma unroll
      for (int t = 0; t < DPL; ++t) {
        const int d = lane + 32 * t;
        if (EXACT || d < hd) acc[t] += pj * vr[d];
      }
    }
  }
  if (!active) return;
  const int64_t C = H * hd;
  float* o = out + (r * tokens + i) * C + h * hd;
  const float inv = 1.0f / run_sum;
#pragma unroll
  for (int t = 0; t < DPL; ++t) {
    const int d = lane + 32 * t;
    if (EXACT || d < hd) o[d] = acc[t] * inv;
  }
}

// z[m, c·P + p] = h[p·M + m, c]
__global__ void interleave_kernel(const float* h, int64_t P, int64_t M, int64_t C, size_t n, float* z) {
  for (size_t e = blockIdx.x * size_t{blockDim.x} + threadIdx.x; e < n; e += size_t{gridDim.x} * blockDim.x) {
    const int64_t p = static_cast<int64_t>(e) % P;
    const int64_t c = (static_cast<int64_t>(e) / P) % C;
    const int64_t m = static_cast<int64_t>(e) / (P * C);
    z[e] = h[(p * M + m) * C + c];
  }
}

// One thread per position m: softmax over its P logits, then the floor.
__global__ void stream_weights_kernel(float* a, int64_t M, int64_t P, float keep, float floor_value) {
  for (int64_t m = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; m < M; m += int64_t{gridDim.x} * blockDim.x) {
    float* row = a + m * P;
    float mx = -INFINITY;
    for (int64_t p = 0; p < P; ++p) mx = fmaxf(mx, row[p]);
    float sum = 0.0f;
    for (int64_t p = 0; p < P; ++p) {
      row[p] = expf(row[p] - mx);
      sum = __fadd_rn(sum, row[p]);
    }
    const float inv = __fdiv_rn(1.0f, sum);
    for (int64_t p = 0; p < P; ++p) row[p] = __fadd_rn(__fmul_rn(__fmul_rn(row[p], inv), keep), floor_value);
  }
}

// out[m, c] = Σ_p w[m, p] · h[p·M + m, c], in stream order.
__global__ void weighted_stream_sum_kernel(const float* h, const float* w, int64_t P, int64_t M, int64_t C, size_t n,
                                           float* out) {
  for (size_t e = blockIdx.x * size_t{blockDim.x} + threadIdx.x; e < n; e += size_t{gridDim.x} * blockDim.x) {
    const int64_t m = static_cast<int64_t>(e) / C, c = static_cast<int64_t>(e) % C;
    float acc = __fmul_rn(w[m * P], h[m * C + c]);
    for (int64_t p = 1; p < P; ++p) acc = __fadd_rn(acc, __fmul_rn(w[m * P + p], h[(p * M + m) * C + c]));
    out[e] = acc;
  }
}

// The SIMT attention's launch: its dynamic shared memory and grid.
inline size_t attention_shared_bytes(int64_t hd) {
  return static_cast<size_t>(2 * kKeyTile * (hd + 1) + kWarps * hd) * sizeof(float);
}
inline dim3 attention_grid(int64_t rows, int64_t H, int64_t tokens) {
  return dim3(static_cast<unsigned>((tokens + kWarps - 1) / kWarps), static_cast<unsigned>(H),
              static_cast<unsigned>(rows));
}

// Calls f(Dpl{}, Exact{}) with the attention_kernel<DPL, EXACT> parameters
// for head_dim hd (at most 256), as integral constants: exact tiles for 64
// and 128.
template <typename F>
void with_attention_variant(int64_t hd, F&& f) {
  using std::bool_constant, std::integral_constant;
  if (hd == 64)
    f(integral_constant<int, 2>{}, bool_constant<true>{});
  else if (hd == 128)
    f(integral_constant<int, 4>{}, bool_constant<true>{});
  else if (hd <= 32)
    f(integral_constant<int, 1>{}, bool_constant<false>{});
  else if (hd <= 64)
    f(integral_constant<int, 2>{}, bool_constant<false>{});
  else if (hd <= 128)
    f(integral_constant<int, 4>{}, bool_constant<false>{});
  else
    f(integral_constant<int, 8>{}, bool_constant<false>{});
}

}  // namespace
}  // namespace varps::cuda::transformer
