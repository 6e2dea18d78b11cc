#pragma once
// How the CUDA tests compare a kernel's output with the CPU reference:
// non-finite entries must agree exactly, and the finite ones are judged by
// the normalised error ‖got − ref‖ / ‖ref‖ against a bound from the operand
// precision and the reduction length.
#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace varps::testing {

// float32 arithmetic on both sides, summed in different orders: the error of
// a length-K reduction grows like sqrt(K) roundings.
inline double fp32_tol(int64_t K) {
  return 16.0 * FLT_EPSILON * std::sqrt(static_cast<double>(std::max<int64_t>(K, 1)));
}
// bf16 operands: each rounded to 8 significant bits (relative 2^-9), so a
// product's normalised error is about 2^-9·√2 whatever K; fp16 keeps 11 bits.
constexpr double kBf16Tol = 1e-2;
constexpr double kFp16Tol = 2e-3;
// SiLU, GELU and the softmax's exponentials: the CPU evaluates them eight
// lanes at a time with glibc's vector expf (libmvec; GELU's tanh form as
// x / (1 + exp(-2u))), an emulated kernel with the scalar libm tanhf and
// expf (a device with CUDA's). Each is within a few ulp of the exact
// function and the rest of the expression rounds alike, so an element
// differs by a few ulp of its size (the kernels' 1 + tanh cancels near -1,
// but only where the output is small against the norm): 8 ulp of the norm.
constexpr double kVectorMathTol = 8 * FLT_EPSILON;

inline std::vector<float> random_vector(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

struct Compared {
  double error = 0.0;                // ‖got − ref‖ / ‖ref‖ over the finite reference entries
  int64_t mismatched_nonfinite = 0;  // entries finite on one side only, or different non-finite values
};

inline Compared compare(const std::vector<float>& got, const std::vector<float>& ref) {
  Compared c;
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const bool rf = std::isfinite(ref[i]), gf = std::isfinite(got[i]);
    if (rf != gf || (!rf && !(std::isnan(ref[i]) && std::isnan(got[i])) && ref[i] != got[i])) {
      ++c.mismatched_nonfinite;
      continue;
    }
    if (!rf) continue;
    const double d = static_cast<double>(got[i]) - ref[i];
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  c.error = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  return c;
}

#define EXPECT_CLOSE(got, ref, tol)                                       \
  do {                                                                    \
    const Compared c_ = compare((got), (ref));                            \
    EXPECT_EQ(c_.mismatched_nonfinite, 0) << "non-finite entries differ"; \
    EXPECT_LE(c_.error, (tol)) << "normalised error";                     \
  } while (0)

}  // namespace varps::testing
