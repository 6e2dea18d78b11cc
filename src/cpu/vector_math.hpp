#pragma once
// Elementwise activations over arrays. The AVX2 path goes 8 lanes at a time
// through glibc's vector math library (libmvec, AVX2 variants), the scalar
// tail through libm. The portable path calls libm for every value in the
// same order of operations (softmax's sum in the same 8 partial sums), so
// the two differ only where libmvec's expf rounds differently from libm's.
#include <algorithm>
#include <cmath>
#include <cstddef>

#include "cpu/kernel_path.hpp"

#if VARPS_CPU_AVX2
#include <immintrin.h>

extern "C" __m256 _ZGVdN8v_expf(__m256);
#endif

namespace varps::cpu {

// The scalar formulas, for the AVX2 path's tails and every value of the
// portable path.
inline float silu(float v) { return v / (1.0f + std::exp(-v)); }

// GELU's tanh form, 0.5·x·(1 + tanh(u)) with u = √(2/π)·(x + 0.044715·x³),
// computed as x / (1 + exp(−2u)): the same function (1 + tanh(u) is
// 2 / (1 + exp(−2u))), one exp instead of a tanh (less than half the
// vector library's time), and without 1 + tanh(u)'s cancellation where x
// is negative.
inline float gelu_tanh(float v) {
  const float k = 0.7978845608028654f;
  const float u = k * (v + 0.044715f * (v * v * v));
  return v / (1.0f + std::exp(-2.0f * u));
}

// softmax's sum: the 8 partial sums of x[0, i) added in lane order, then
// x[i, n) exponentiated (less the maximum mx) and added one by one.
inline float sum_lanes_then_tail(const float (&lanes)[8], float* x, size_t i, size_t n, float mx) {
  float sum = 0.0f;
  for (float l : lanes) sum += l;
  for (; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  return sum;
}

#if VARPS_CPU_AVX2

// x / (1 + exp(-x)), 8 lanes.
inline __m256 silu8(__m256 v) {
  const __m256 e = _ZGVdN8v_expf(_mm256_xor_ps(v, _mm256_set1_ps(-0.0f)));
  return _mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

// y = x / (1 + exp(-x))
inline void silu_span(const float* x, float* y, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, silu8(_mm256_loadu_ps(x + i)));
  for (; i < n; ++i) y[i] = silu(x[i]);
}

// x = softmax(scale · x) over n values: the maximum subtracted, exp in 8
// lanes, the sum in 8 partial sums then across them.
inline void softmax_span(float* x, size_t n, float scale) {
  const __m256 vscale = _mm256_set1_ps(scale);
  size_t i = 0;
  __m256 vmax = _mm256_set1_ps(-INFINITY);
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), vscale);
    _mm256_storeu_ps(x + i, v);
    vmax = _mm256_max_ps(vmax, v);
  }
  float lanes[8];
  _mm256_storeu_ps(lanes, vmax);
  float mx = -INFINITY;
  for (float l : lanes) mx = std::max(mx, l);
  for (; i < n; ++i) {
    x[i] *= scale;
    mx = std::max(mx, x[i]);
  }
  const __m256 vmx = _mm256_set1_ps(mx);
  __m256 vsum = _mm256_setzero_ps();
  for (i = 0; i + 8 <= n; i += 8) {
    const __m256 e = _ZGVdN8v_expf(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmx));
    _mm256_storeu_ps(x + i, e);
    vsum = _mm256_add_ps(vsum, e);
  }
  _mm256_storeu_ps(lanes, vsum);
  const float inv = 1.0f / sum_lanes_then_tail(lanes, x, i, n, mx);
  const __m256 vinv = _mm256_set1_ps(inv);
  for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), vinv));
  for (; i < n; ++i) x[i] *= inv;
}

// gelu_tanh, 8 lanes.
inline __m256 gelu_tanh8(__m256 v) {
  const __m256 vk = _mm256_set1_ps(0.7978845608028654f), vc = _mm256_set1_ps(0.044715f),
               minus_two = _mm256_set1_ps(-2.0f), one = _mm256_set1_ps(1.0f);
  const __m256 cube = _mm256_mul_ps(_mm256_mul_ps(v, v), v);
  const __m256 u = _mm256_mul_ps(vk, _mm256_add_ps(v, _mm256_mul_ps(vc, cube)));
  const __m256 e = _ZGVdN8v_expf(_mm256_mul_ps(minus_two, u));
  return _mm256_div_ps(v, _mm256_add_ps(one, e));
}

// x = gelu_tanh(x)
inline void gelu_tanh_span(float* x, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, gelu_tanh8(_mm256_loadu_ps(x + i)));
  for (; i < n; ++i) x[i] = gelu_tanh(x[i]);
}

#else  // portable

inline void silu_span(const float* x, float* y, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] = silu(x[i]);
}

inline void softmax_span(float* x, size_t n, float scale) {
  constexpr size_t kLanes = 8;
  float mx = -INFINITY;
  for (size_t i = 0; i < n; ++i) {
    x[i] *= scale;
    mx = std::max(mx, x[i]);
  }
  float lanes[kLanes] = {};
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (size_t l = 0; l < kLanes; ++l) {
      x[i + l] = std::exp(x[i + l] - mx);
      lanes[l] += x[i + l];
    }
  const float inv = 1.0f / sum_lanes_then_tail(lanes, x, i, n, mx);
  for (i = 0; i < n; ++i) x[i] *= inv;
}

inline void gelu_tanh_span(float* x, size_t n) {
  for (size_t i = 0; i < n; ++i) x[i] = gelu_tanh(x[i]);
}

#endif

}  // namespace varps::cpu
