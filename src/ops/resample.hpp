#pragma once
// Per-pixel arithmetic of the PyTorch resampling modes (bicubic upsampling,
// area downsampling), the one definition the CPU backend and the CUDA
// kernels both compute. Every float step is rounded as in ATen's loops
// (ops/host_device.hpp), so the backends agree bit for bit.
#include <cmath>
#include <cstdint>

#include "ops/host_device.hpp"

namespace varps::ops {

// The four clamped source indices and weights of one output position.
struct CubicTaps {
  int64_t index[4];
  float weight[4];
};

// PyTorch's cubic convolution weights, A = -0.75; the constants A + 2,
// A + 3, 5A, 8A and 4A are exact in float, as in the CPU's expressions.
constexpr float kCubicA = -0.75f;

// ((A + 2)·x − (A + 3))·x·x + 1
VARPS_HOST_DEVICE inline float cubic_cc1(float x) {
  constexpr float A = kCubicA;
  return add_rn(mul_rn(mul_rn(sub_rn(mul_rn(A + 2, x), A + 3), x), x), 1.0f);
}

// ((A·x − 5A)·x + 8A)·x − 4A
VARPS_HOST_DEVICE inline float cubic_cc2(float x) {
  constexpr float A = kCubicA;
  return sub_rn(mul_rn(add_rn(mul_rn(sub_rn(mul_rn(A, x), 5 * A), x), 8 * A), x), 4 * A);
}

// The taps of output position o when `in` samples become `out`.
VARPS_HOST_DEVICE inline CubicTaps cubic_taps(int64_t in, int64_t out, int64_t o) {
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

// One output pixel of an h×w plane `src` from its row and column taps:
// rows first, then columns, as ATen's separable loop sums them.
VARPS_HOST_DEVICE inline float bicubic_sum(const float* src, int64_t w, const CubicTaps& ty, const CubicTaps& tx) {
  float acc = 0.0f;
  for (int j = 0; j < 4; ++j) {
    const float* row = src + ty.index[j] * w;
    float t = mul_rn(row[tx.index[0]], tx.weight[0]);
    for (int i = 1; i < 4; ++i) t = add_rn(t, mul_rn(row[tx.index[i]], tx.weight[i]));
    acc = j == 0 ? mul_rn(t, ty.weight[0]) : add_rn(acc, mul_rn(t, ty.weight[j]));
  }
  return acc;
}

// Output (oy, ox) of one h×w plane upsampled to H×W.
VARPS_HOST_DEVICE inline float bicubic_pixel(const float* src, int64_t h, int64_t w, int64_t H, int64_t W, int64_t oy,
                                             int64_t ox) {
  return bicubic_sum(src, w, cubic_taps(h, H, oy), cubic_taps(w, W, ox));
}

// Adaptive average pooling window of output a (of b) over an input of c:
// [area_start, area_end), from float division as ATen computes it.
VARPS_HOST_DEVICE inline int64_t area_start(int64_t a, int64_t b, int64_t c) {
  return static_cast<int64_t>(floorf(div_rn(static_cast<float>(a * c), static_cast<float>(b))));
}

VARPS_HOST_DEVICE inline int64_t area_end(int64_t a, int64_t b, int64_t c) {
  return static_cast<int64_t>(ceilf(div_rn(static_cast<float>((a + 1) * c), static_cast<float>(b))));
}

// Output (oy, ox) of one H×W plane pooled to h×w: the window summed in
// row-major order, then divided by its height and its width in turn.
VARPS_HOST_DEVICE inline float area_pixel(const float* src, int64_t H, int64_t W, int64_t h, int64_t w, int64_t oy,
                                            int64_t ox) {
  const int64_t y0 = area_start(oy, h, H), y1 = area_end(oy, h, H);
  const int64_t x0 = area_start(ox, w, W), x1 = area_end(ox, w, W);
  float sum = 0.0f;
  for (int64_t y = y0; y < y1; ++y)
    for (int64_t x = x0; x < x1; ++x) sum = add_rn(sum, src[y * W + x]);
  return div_rn(div_rn(sum, static_cast<float>(y1 - y0)), static_cast<float>(x1 - x0));
}

}  // namespace varps::ops
