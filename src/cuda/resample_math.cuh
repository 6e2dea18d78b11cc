#pragma once
// Per-pixel arithmetic of the PyTorch resampling modes (bicubic upsampling,
// area downsampling), callable from host and device so it can be checked
// against the CPU reference (src/cpu/cpu_image.cpp) without a GPU. Every
// float operation is one round-to-nearest step in the CPU's order: on the
// device through the _rn intrinsics, which nvcc never fuses into
// multiply-adds; on the host as plain operators, as the project builds with
// -ffp-contract=off. The kernels then match the CPU bit for bit.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

namespace varps::cuda::resample {

__host__ __device__ inline float add_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

__host__ __device__ inline float sub_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}

__host__ __device__ inline float mul_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

__host__ __device__ inline float div_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}

// The four clamped source indices and weights of one output position.
struct CubicTaps {
  int64_t index[4];
  float weight[4];
};

// PyTorch's cubic convolution weights, A = -0.75; the constants A + 2,
// A + 3, 5A, 8A and 4A are exact in float, as in the CPU's expressions.
constexpr float kCubicA = -0.75f;

// ((A + 2)·x − (A + 3))·x·x + 1
__host__ __device__ inline float cubic_cc1(float x) {
  constexpr float A = kCubicA;
  return add_rn(mul_rn(mul_rn(sub_rn(mul_rn(A + 2, x), A + 3), x), x), 1.0f);
}

// ((A·x − 5A)·x + 8A)·x − 4A
__host__ __device__ inline float cubic_cc2(float x) {
  constexpr float A = kCubicA;
  return sub_rn(mul_rn(add_rn(mul_rn(sub_rn(mul_rn(A, x), 5 * A), x), 8 * A), x), 4 * A);
}

// cubic_taps of the CPU for output position o of in -> out.
__host__ __device__ inline CubicTaps cubic_taps(int64_t in, int64_t out, int64_t o) {
  const float scale = div_rn(static_cast<float>(in), static_cast<float>(out));
  const float real = sub_rn(mul_rn(scale, add_rn(static_cast<float>(o), 0.5f)), 0.5f);  // not clamped for cubic
  const int64_t base = static_cast<int64_t>(floorf(real));
  const float t = sub_rn(real, static_cast<float>(base));
  const float t2 = sub_rn(1.0f, t);
  CubicTaps taps;
  taps.weight[0] = cubic_cc2(add_rn(t, 1.0f));
  taps.weight[1] = cubic_cc1(t);
  taps.weight[2] = cubic_cc1(t2);
  taps.weight[3] = cubic_cc2(add_rn(t2, 1.0f));
  for (int j = 0; j < 4; ++j) {
    const int64_t i = base - 1 + j;
    taps.index[j] = i < 0 ? 0 : (i > in - 1 ? in - 1 : i);
  }
  return taps;
}

// Output (oy, ox) of one h×w plane upsampled to H×W: rows first, then
// columns, as ATen's separable loop and the CPU sum.
__host__ __device__ inline float bicubic_pixel(const float* src, int64_t h, int64_t w, int64_t H, int64_t W, int64_t oy,
                                               int64_t ox) {
  const CubicTaps ty = cubic_taps(h, H, oy), tx = cubic_taps(w, W, ox);
  float acc = 0.0f;
  for (int j = 0; j < 4; ++j) {
    const float* row = src + ty.index[j] * w;
    float t = mul_rn(row[tx.index[0]], tx.weight[0]);
    for (int i = 1; i < 4; ++i) t = add_rn(t, mul_rn(row[tx.index[i]], tx.weight[i]));
    acc = j == 0 ? mul_rn(t, ty.weight[0]) : add_rn(acc, mul_rn(t, ty.weight[j]));
  }
  return acc;
}

// Adaptive average pooling window of output a (of b) over an input of c:
// [area_start, area_end), from float division as the CPU computes it.
__host__ __device__ inline int64_t area_start(int64_t a, int64_t b, int64_t c) {
  return static_cast<int64_t>(floorf(div_rn(static_cast<float>(a * c), static_cast<float>(b))));
}

__host__ __device__ inline int64_t area_end(int64_t a, int64_t b, int64_t c) {
  return static_cast<int64_t>(ceilf(div_rn(static_cast<float>((a + 1) * c), static_cast<float>(b))));
}

// Output (oy, ox) of one H×W plane pooled to h×w: the window summed in
// row-major order, then divided by its height and its width in turn.
__host__ __device__ inline float area_pixel(const float* src, int64_t H, int64_t W, int64_t h, int64_t w, int64_t oy,
                                            int64_t ox) {
  const int64_t y0 = area_start(oy, h, H), y1 = area_end(oy, h, H);
  const int64_t x0 = area_start(ox, w, W), x1 = area_end(ox, w, W);
  float sum = 0.0f;
  for (int64_t y = y0; y < y1; ++y)
    for (int64_t x = x0; x < x1; ++x) sum = add_rn(sum, src[y * W + x]);
  return div_rn(div_rn(sum, static_cast<float>(y1 - y0)), static_cast<float>(x1 - x0));
}

}  // namespace varps::cuda::resample
