#pragma once
// What the CPU kernel tests share: seeded uniform operands, the tanh GELU in
// double precision that the products' fused epilogue approximates, a
// float's bits, and the check that a product row's bits depend neither on
// the rows beside it nor on the thread count.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

namespace varps::test {

// Uniform in [mean − scale, mean + scale), the same values for the same seed.
inline std::vector<float> random_vector(size_t n, uint32_t seed, float scale = 1.0f, float mean = 0.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(mean - scale, mean + scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

inline double gelu(double v) { return 0.5 * v * (1.0 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v))); }

inline uint32_t bits_of(float x) {
  uint32_t b;
  std::memcpy(&b, &x, sizeof b);
  return b;
}

// multiply(a, M, c): the product of M rows of K values from a into c
// [M, N]. Rows 0, 7 and M − 1 alone, on one thread, must give the bits
// they got among all M rows on two.
template <class Multiply>
void expect_rows_independent(const std::vector<float>& x, int64_t M, int64_t N, int64_t K, Multiply multiply) {
  const int saved = omp_get_max_threads();
  std::vector<float> all(static_cast<size_t>(M * N));
  omp_set_num_threads(2);
  multiply(x.data(), M, all.data());
  omp_set_num_threads(1);
  for (int64_t m : {int64_t{0}, int64_t{7}, M - 1}) {
    std::vector<float> one(static_cast<size_t>(N));
    multiply(x.data() + m * K, 1, one.data());
    for (int64_t n = 0; n < N; ++n)
      ASSERT_EQ(bits_of(one[n]), bits_of(all[m * N + n])) << "row " << m << " col " << n;
  }
  omp_set_num_threads(saved);
}

}  // namespace varps::test
