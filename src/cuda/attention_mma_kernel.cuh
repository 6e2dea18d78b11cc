#pragma once
// Tensor-core attention for head_dim 64 over a bf16 or fp16 KV cache (the
// cache of --precision bf16/fp16): scores and the weighted sum of values as
// mma.sync m16n8k16 products with float32 accumulation, the softmax online
// in float32 between them (FlashAttention-2's scheme). The SIMT kernel of
// transformer_kernels.cuh stays the path for a float32 cache, other head dims
// and scales of fewer than 16 queries.
//
// Each warp takes 16 queries of one (row, head); a block's warps share K/V
// tiles of 64 keys in shared memory. Beside the cache's own rounding, the
// queries and the softmax weights are rounded to the cache's precision as
// they enter the products.
//
// A header so that a host compiler can build the kernel too: the tests run
// it on the CPU through tests/cuda/kernel_emulator.hpp.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "cuda/mma_m16n8k16.cuh"

namespace varps::cuda::attention_mma {
// Internal linkage, as kernels private to their launching file: the tests
// build their own copies.
namespace {

constexpr int kHd = 64;
constexpr int kMmaWarps = 4;                 // 16 queries each
constexpr int kMmaQueries = 16 * kMmaWarps;  // per block
constexpr int kThreads = 32 * kMmaWarps;
constexpr int kMmaKeys = 64;          // keys per tile
constexpr int kTileStride = kHd + 8;  // elements per tile row: 144 bytes, so fragment loads hit distinct banks

__device__ inline float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ inline float quad_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

// Fragments as in mma_m16n8k16.cuh; B's columns are keys (scores) or head
// dims (the weighted sum of values).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    attention_mma_kernel(const float* q, const T* k_cache, const T* v_cache, int64_t H, int64_t tokens,
                         int64_t capacity, int64_t len, float scale, const float* prefix_k, const float* prefix_v,
                         int64_t T_prefix, int64_t rows_per_stream, float* out) {
  __shared__ __align__(16) uint16_t ks[kMmaKeys * kTileStride];
  __shared__ __align__(16) uint16_t vs[kMmaKeys * kTileStride];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int64_t h = blockIdx.y, r = blockIdx.z;
  const int64_t stream_id = T_prefix > 0 ? r / rows_per_stream : 0;
  const T* kc = k_cache + (r * H + h) * capacity * kHd;
  const T* vc = v_cache + (r * H + h) * capacity * kHd;
  const float* pk = T_prefix > 0 ? prefix_k + (stream_id * H + h) * T_prefix * kHd : nullptr;
  const float* pv = T_prefix > 0 ? prefix_v + (stream_id * H + h) * T_prefix * kHd : nullptr;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kMmaQueries + warp * 16;
  const bool active = row0 < tokens;

  // The warp's 16 queries as A fragments, one per 16 head dims.
  uint32_t qa[kHd / 16][4];
  {
    const float* qh = q + (r * H + h) * tokens * kHd;
    const int64_t ra = row0 + g, rb = row0 + g + 8;
#pragma unroll
    for (int kk = 0; kk < kHd / 16; ++kk) {
      const int d = 16 * kk + 2 * t;
      const float2 z = make_float2(0.0f, 0.0f);
      const float2 a0 = ra < tokens ? *reinterpret_cast<const float2*>(qh + ra * kHd + d) : z;
      const float2 a1 = rb < tokens ? *reinterpret_cast<const float2*>(qh + rb * kHd + d) : z;
      const float2 a2 = ra < tokens ? *reinterpret_cast<const float2*>(qh + ra * kHd + d + 8) : z;
      const float2 a3 = rb < tokens ? *reinterpret_cast<const float2*>(qh + rb * kHd + d + 8) : z;
      qa[kk][0] = pack<T>(a0.x, a0.y);
      qa[kk][1] = pack<T>(a1.x, a1.y);
      qa[kk][2] = pack<T>(a2.x, a2.y);
      qa[kk][3] = pack<T>(a3.x, a3.y);
    }
  }

  float o[kHd / 8][4];  // per 8 head dims: rows g (0, 1) and g + 8 (2, 3)
#pragma unroll
  for (int n = 0; n < kHd / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  float max_a = -INFINITY, max_b = -INFINITY;  // rows g and g + 8
  float sum_a = 0.0f, sum_b = 0.0f;            // this lane's part of the rows' sums

  const int64_t width = T_prefix + len;
  for (int64_t j0 = 0; j0 < width; j0 += kMmaKeys) {
    __syncthreads();  // the previous tile is consumed
    // 8 head dims (16 bytes of the tile) per step; keys past the end are zero.
    for (int e = threadIdx.x; e < kMmaKeys * kHd / 8; e += blockDim.x) {
      const int jj = e / (kHd / 8), d = (e % (kHd / 8)) * 8;
      const int64_t j = j0 + jj;
      uint4 kw = make_uint4(0, 0, 0, 0), vw = kw;
      if (j < T_prefix) {
        const float4 k0 = *reinterpret_cast<const float4*>(pk + j * kHd + d);
        const float4 k1 = *reinterpret_cast<const float4*>(pk + j * kHd + d + 4);
        const float4 v0 = *reinterpret_cast<const float4*>(pv + j * kHd + d);
        const float4 v1 = *reinterpret_cast<const float4*>(pv + j * kHd + d + 4);
        kw = make_uint4(pack<T>(k0.x, k0.y), pack<T>(k0.z, k0.w), pack<T>(k1.x, k1.y), pack<T>(k1.z, k1.w));
        vw = make_uint4(pack<T>(v0.x, v0.y), pack<T>(v0.z, v0.w), pack<T>(v1.x, v1.y), pack<T>(v1.z, v1.w));
      } else if (j < width) {
        kw = *reinterpret_cast<const uint4*>(kc + (j - T_prefix) * kHd + d);
        vw = *reinterpret_cast<const uint4*>(vc + (j - T_prefix) * kHd + d);
      }
      *reinterpret_cast<uint4*>(ks + jj * kTileStride + d) = kw;
      *reinterpret_cast<uint4*>(vs + jj * kTileStride + d) = vw;
    }
    __syncthreads();
    if (!active) continue;

    // Scores of the tile: 8 groups of 8 keys.
    float s[kMmaKeys / 8][4];
#pragma unroll
    for (int n = 0; n < kMmaKeys / 8; ++n) {
      s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
      const uint16_t* kr = ks + (8 * n + g) * kTileStride + 2 * t;
#pragma unroll
      for (int kk = 0; kk < kHd / 16; ++kk)
        mma<T>(s[n], qa[kk], *reinterpret_cast<const uint32_t*>(kr + 16 * kk),
               *reinterpret_cast<const uint32_t*>(kr + 16 * kk + 8));
    }
    float tile_a = -INFINITY, tile_b = -INFINITY;
#pragma unroll
    for (int n = 0; n < kMmaKeys / 8; ++n) {
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const bool valid = j0 + 8 * n + 2 * t + (c & 1) < width;
        s[n][c] = valid ? s[n][c] * scale : -INFINITY;
      }
      tile_a = fmaxf(tile_a, fmaxf(s[n][0], s[n][1]));
      tile_b = fmaxf(tile_b, fmaxf(s[n][2], s[n][3]));
    }
    // Every tile holds a key (j0 < width), so the new maxima are finite.
    const float new_a = fmaxf(max_a, quad_max(tile_a)), new_b = fmaxf(max_b, quad_max(tile_b));
    const float corr_a = expf(max_a - new_a), corr_b = expf(max_b - new_b);  // 0 on the first tile
    max_a = new_a;
    max_b = new_b;
    sum_a *= corr_a;
    sum_b *= corr_b;
#pragma unroll
    for (int n = 0; n < kMmaKeys / 8; ++n) {
      s[n][0] = expf(s[n][0] - new_a);
      s[n][1] = expf(s[n][1] - new_a);
      s[n][2] = expf(s[n][2] - new_b);
      s[n][3] = expf(s[n][3] - new_b);
      sum_a += s[n][0] + s[n][1];
      sum_b += s[n][2] + s[n][3];
    }
#pragma unroll
    for (int n = 0; n < kHd / 8; ++n) {
      o[n][0] *= corr_a;
      o[n][1] *= corr_a;
      o[n][2] *= corr_b;
      o[n][3] *= corr_b;
    }
    // o += p·V, 16 keys at a time: two score groups make one A fragment.
#pragma unroll
    for (int kk = 0; kk < kMmaKeys / 16; ++kk) {
      const uint32_t pa[4] = {pack<T>(s[2 * kk][0], s[2 * kk][1]), pack<T>(s[2 * kk][2], s[2 * kk][3]),
                              pack<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]), pack<T>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
      const uint16_t* v0 = vs + (16 * kk + 2 * t) * kTileStride + g;
#pragma unroll
      for (int n = 0; n < kHd / 8; ++n) {
        const uint16_t* vn = v0 + 8 * n;
        const uint32_t b0 = vn[0] | (static_cast<uint32_t>(vn[kTileStride]) << 16);
        const uint32_t b1 = vn[8 * kTileStride] | (static_cast<uint32_t>(vn[9 * kTileStride]) << 16);
        mma<T>(o[n], pa, b0, b1);
      }
    }
  }
  if (!active) return;
  const float inv_a = 1.0f / quad_sum(sum_a), inv_b = 1.0f / quad_sum(sum_b);
  const int64_t C = H * kHd;
  const int64_t ra = row0 + g, rb = row0 + g + 8;
#pragma unroll
  for (int n = 0; n < kHd / 8; ++n) {
    const int64_t d = h * kHd + 8 * n + 2 * t;
    if (ra < tokens)
      *reinterpret_cast<float2*>(out + (r * tokens + ra) * C + d) = make_float2(o[n][0] * inv_a, o[n][1] * inv_a);
    if (rb < tokens)
      *reinterpret_cast<float2*>(out + (r * tokens + rb) * C + d) = make_float2(o[n][2] * inv_b, o[n][3] * inv_b);
  }
}

inline dim3 grid_of(int64_t rows, int64_t H, int64_t tokens) {
  return dim3(static_cast<unsigned>((tokens + kMmaQueries - 1) / kMmaQueries), static_cast<unsigned>(H),
              static_cast<unsigned>(rows));
}

}  // namespace
}  // namespace varps::cuda::attention_mma
