#include "cpu/group_stats.hpp"

#include <cmath>

#include "cpu/kernel_path.hpp"

#if VARPS_CPU_AVX2
#include <immintrin.h>
#endif

namespace varps::cpu {

#if VARPS_CPU_AVX2

// Two vectors of 4 lanes, for the adds' latency.
GroupStats group_stats(const float* xs, int64_t cnt, float eps) {
  const auto lanes_sum = [](__m256d a, __m256d b) {
    double l[4];
    _mm256_storeu_pd(l, _mm256_add_pd(a, b));
    return (l[0] + l[1]) + (l[2] + l[3]);
  };
  int64_t i = 0;
  __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
  for (; i + 8 <= cnt; i += 8) {
    s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm_loadu_ps(xs + i)));
    s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm_loadu_ps(xs + i + 4)));
  }
  double mean = lanes_sum(s0, s1);
  for (; i < cnt; ++i) mean += xs[i];
  mean /= static_cast<double>(cnt);
  const __m256d m = _mm256_set1_pd(mean);
  s0 = s1 = _mm256_setzero_pd();
  for (i = 0; i + 8 <= cnt; i += 8) {
    const __m256d d0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(xs + i)), m);
    const __m256d d1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(xs + i + 4)), m);
    s0 = _mm256_add_pd(s0, _mm256_mul_pd(d0, d0));
    s1 = _mm256_add_pd(s1, _mm256_mul_pd(d1, d1));
  }
  double var = lanes_sum(s0, s1);
  for (; i < cnt; ++i) {
    const double d = xs[i] - mean;
    var += d * d;
  }
  var /= static_cast<double>(cnt);
  return {static_cast<float>(mean), static_cast<float>(1.0 / std::sqrt(var + static_cast<double>(eps)))};
}

#else  // portable

GroupStats group_stats(const float* xs, int64_t cnt, float eps) {
  // s[l] and s[l + 4] are lane l of the AVX2 path's two vectors.
  const auto lanes_sum = [](const double s[8]) {
    return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
  };
  int64_t i = 0;
  double s[8] = {};
  for (; i + 8 <= cnt; i += 8)
    for (int l = 0; l < 8; ++l) s[l] += static_cast<double>(xs[i + l]);
  double mean = lanes_sum(s);
  for (; i < cnt; ++i) mean += xs[i];
  mean /= static_cast<double>(cnt);
  for (double& v : s) v = 0.0;
  for (i = 0; i + 8 <= cnt; i += 8)
    for (int l = 0; l < 8; ++l) {
      const double d = static_cast<double>(xs[i + l]) - mean;
      s[l] += d * d;
    }
  double var = lanes_sum(s);
  for (; i < cnt; ++i) {
    const double d = xs[i] - mean;
    var += d * d;
  }
  var /= static_cast<double>(cnt);
  return {static_cast<float>(mean), static_cast<float>(1.0 / std::sqrt(var + static_cast<double>(eps)))};
}

#endif

}  // namespace varps::cpu
