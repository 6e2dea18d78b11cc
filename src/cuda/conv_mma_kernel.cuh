#pragma once
// The tensor-core convolution's kernel, which cuda_conv_mma.cu launches: an
// implicit GEMM for bf16/fp16 products, out[n, co, p] = Σ_r w[co, r]·col[r,
// p] over r = (ci, ky, kx), where col[r, p] is the input pixel under tap
// (ky, kx) of output pixel p, or the zero padding, normalised first when
// the convolution reads a GroupNorm. Each block builds the tiles of col it
// needs in shared memory, rounded to the product precision, so the im2col
// matrix (9× the input for a 3×3 kernel) never reaches global memory, and
// the bias and the residual add happen in the epilogue.
//
// A block computes 64 output channels × 128 output pixels of one image with
// 8 warps of 32×32 (mma_m16n8k16.cuh), stepping over r 32 at a time.
//
// A header so that a host compiler can build the kernel too: the tests run
// it on the CPU through tests/cuda/kernel_emulator.hpp.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/conv_mma.hpp"
#include "cuda/group_norm_math.cuh"
#include "cuda/mma_m16n8k16.cuh"

namespace varps::cuda::conv_mma {
// Internal linkage, as kernels private to their launching file: the tests
// build their own copies.
namespace {

constexpr int kBM = 64;   // output channels per block
constexpr int kBN = 128;  // output pixels per block
constexpr int kBK = 32;   // rows of col per step
constexpr int kWarpsM = 2, kWarpsN = 4;
constexpr int kThreads = 32 * kWarpsM * kWarpsN;
constexpr int kMTiles = kBM / kWarpsM / 16;  // 16-row A fragments per warp
constexpr int kNTiles = kBN / kWarpsN / 8;   // 8-column B fragments per warp
// Elements per tile row: 80 bytes, so the fragment loads of a warp's eight
// rows (g) and four column pairs (t) hit 32 distinct banks.
constexpr int kStride = kBK + 8;

static_assert(kThreads % kBN == 0 && (kBK / 2) % (kThreads / kBN) == 0, "B tile rows split evenly");
static_assert(kThreads == kBM * kBK / 8, "one 8-element A load per thread");

// Where row r = k0 + i of the current step reads: its input plane, tap
// offset and, for a normalised input, its channel's GroupNorm terms.
struct StepRows {
  int64_t plane[kBK];  // ci·H·W, or -1 past the last row
  int dy[kBK], dx[kBK];
  float mean[kBK], ga[kBK], be[kBK];
};

template <typename T, bool kNorm, bool kAdd>
__global__ void __launch_bounds__(kThreads)
    conv_mma_kernel(const float* __restrict__ x, ConvGeometry geo, NormOnRead norm, const uint16_t* __restrict__ w,
                    bool w_vec, const float* __restrict__ b, int64_t n0, float* __restrict__ out) {
  __shared__ __align__(16) uint16_t as[kBM * kStride];  // [co][r]
  __shared__ __align__(16) uint16_t bs[kBN * kStride];  // [p][r]: B fragments pair consecutive r
  __shared__ StepRows rows;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
  const int wm = warp / kWarpsN, wn = warp % kWarpsN;
  const int64_t n = n0 + blockIdx.z;
  const int64_t co0 = static_cast<int64_t>(blockIdx.y) * kBM, p0 = static_cast<int64_t>(blockIdx.x) * kBN;
  const int64_t P = geo.Ho * geo.Wo, Kdim = geo.Ci * geo.k * geo.k, HW = geo.H * geo.W;
  const float* xn = x + n * geo.Ci * HW;

  // The output pixel whose column this thread builds, and its first row pair.
  const int bp = tid % kBN, bq = tid / kBN;
  const int64_t p = p0 + bp;
  const bool p_in = p < P;
  const int64_t oy = p_in ? p / geo.Wo : 0, ox = p_in ? p - oy * geo.Wo : 0;
  const int64_t iy0 = oy * geo.stride - geo.pad_t, ix0 = ox * geo.stride - geo.pad_l;
  // The A row and columns this thread loads.
  const int ar = tid >> 2, ac = (tid & 3) * 8;

  float acc[kMTiles][kNTiles][4] = {};
  for (int64_t k0 = 0; k0 < Kdim; k0 += kBK) {
    __syncthreads();  // the previous step's tiles are consumed
    if (tid < kBK) {
      const int64_t r = k0 + tid;
      if (r < Kdim) {
        const int taps = geo.k * geo.k;
        const int64_t ci = r / taps;
        const int tap = static_cast<int>(r - ci * taps);
        rows.plane[tid] = ci * HW;
        rows.dy[tid] = tap / geo.k;
        rows.dx[tid] = tap % geo.k;
        if constexpr (kNorm) {
          const float* st = norm.stats + (n * norm.groups + ci / (geo.Ci / norm.groups)) * 2;
          rows.mean[tid] = st[0];
          rows.ga[tid] = ops::group_norm_scale(norm.gamma[ci], st[1]);
          rows.be[tid] = norm.beta[ci];
        }
      } else {
        rows.plane[tid] = -1;
      }
    }
    {
      const int64_t co = co0 + ar, r = k0 + ac;
      uint4 v = make_uint4(0, 0, 0, 0);
      if (co < geo.Co) {
        const uint16_t* src = w + co * Kdim + r;
        if (w_vec && r + 8 <= Kdim) {
          v = *reinterpret_cast<const uint4*>(src);
        } else {
          uint16_t h[8];
#pragma unroll
          for (int e = 0; e < 8; ++e) h[e] = r + e < Kdim ? src[e] : uint16_t{0};
          v = make_uint4(h[0] | (uint32_t{h[1]} << 16), h[2] | (uint32_t{h[3]} << 16), h[4] | (uint32_t{h[5]} << 16),
                         h[6] | (uint32_t{h[7]} << 16));
        }
      }
      *reinterpret_cast<uint4*>(as + ar * kStride + ac) = v;
    }
    __syncthreads();  // the row table is written
#pragma unroll
    for (int q = bq; q < kBK / 2; q += kThreads / kBN) {
      float v[2];
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int i = 2 * q + e;
        const int64_t plane = rows.plane[i];
        const int64_t iy = iy0 + rows.dy[i], ix = ix0 + rows.dx[i];
        float val = 0.0f;
        if (p_in && plane >= 0 && iy >= 0 && iy < geo.H && ix >= 0 && ix < geo.W) {
          val = xn[plane + iy * geo.W + ix];
          if constexpr (kNorm) val = norm_value(val, rows.mean[i], rows.ga[i], rows.be[i], norm.silu);
        }
        v[e] = val;
      }
      *reinterpret_cast<uint32_t*>(bs + bp * kStride + 2 * q) = pack<T>(v[0], v[1]);
    }
    __syncthreads();  // both tiles are complete
#pragma unroll
    for (int ks = 0; ks < kBK; ks += 16) {
      uint32_t a[kMTiles][4];
#pragma unroll
      for (int mi = 0; mi < kMTiles; ++mi) {
        const uint16_t* base = as + (wm * (kBM / kWarpsM) + mi * 16 + g) * kStride + ks + 2 * t;
        a[mi][0] = *reinterpret_cast<const uint32_t*>(base);
        a[mi][1] = *reinterpret_cast<const uint32_t*>(base + 8 * kStride);
        a[mi][2] = *reinterpret_cast<const uint32_t*>(base + 8);
        a[mi][3] = *reinterpret_cast<const uint32_t*>(base + 8 * kStride + 8);
      }
#pragma unroll
      for (int ni = 0; ni < kNTiles; ++ni) {
        const uint16_t* col = bs + (wn * (kBN / kWarpsN) + ni * 8 + g) * kStride + ks + 2 * t;
        const uint32_t b0 = *reinterpret_cast<const uint32_t*>(col);
        const uint32_t b1 = *reinterpret_cast<const uint32_t*>(col + 8);
#pragma unroll
        for (int mi = 0; mi < kMTiles; ++mi) mma<T>(acc[mi][ni], a[mi], b0, b1);
      }
    }
  }

  // out = bias + product, or (out + bias) + product: the CPU's order.
#pragma unroll
  for (int mi = 0; mi < kMTiles; ++mi)
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int64_t co = co0 + wm * (kBM / kWarpsM) + mi * 16 + g + 8 * half;
      if (co >= geo.Co) continue;
      const float bias = b ? b[co] : 0.0f;
      float* plane = out + (n * geo.Co + co) * P;
#pragma unroll
      for (int ni = 0; ni < kNTiles; ++ni)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int64_t pp = p0 + wn * (kBN / kWarpsN) + ni * 8 + 2 * t + e;
          if (pp >= P) continue;
          const float base = kAdd ? __fadd_rn(plane[pp], bias) : bias;
          plane[pp] = __fadd_rn(base, acc[mi][ni][2 * half + e]);
        }
    }
}

using Kernel = void (*)(const float*, ConvGeometry, NormOnRead, const uint16_t*, bool, const float*, int64_t, float*);

// The instance for a normalised input (norm) and a residual add (add).
template <typename T>
Kernel kernel_for(bool norm, bool add) {
  if (norm) return add ? conv_mma_kernel<T, true, true> : conv_mma_kernel<T, true, false>;
  return add ? conv_mma_kernel<T, false, true> : conv_mma_kernel<T, false, false>;
}

// The blocks of a launch over images n0 .. n0 + images − 1.
inline dim3 grid_of(const ConvGeometry& geo, int64_t images) {
  const int64_t P = geo.Ho * geo.Wo;
  return dim3(static_cast<unsigned>((P + kBN - 1) / kBN), static_cast<unsigned>((geo.Co + kBM - 1) / kBM),
              static_cast<unsigned>(images));
}

// Whether the kernel may read the weight rows 16 bytes at a time.
inline bool weights_vectorised(const ConvGeometry& geo, const void* w) {
  return (geo.Ci * geo.k * geo.k) % 8 == 0 && reinterpret_cast<uintptr_t>(w) % 16 == 0;
}

}  // namespace
}  // namespace varps::cuda::conv_mma
