#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <set>
#include <vector>

#include "ops/sampler.hpp"

namespace varps {
namespace {

// Known-answer vectors of the Random123 reference (kat_vectors, philox4x32_10).
TEST(Philox, MatchesRandom123KnownAnswers) {
  EXPECT_EQ(philox4x32_10({0, 0, 0, 0}, {0, 0}),
            (std::array<uint32_t, 4>{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}));
  EXPECT_EQ(philox4x32_10({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu}),
            (std::array<uint32_t, 4>{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}));
  EXPECT_EQ(philox4x32_10({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u}),
            (std::array<uint32_t, 4>{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}));
}

TEST(TokenUniform, DependsOnSeedScaleAndTokenOnly) {
  const double u = token_uniform(7, 3, 11);
  EXPECT_GE(u, 0.0);
  EXPECT_LT(u, 1.0);
  EXPECT_EQ(u, token_uniform(7, 3, 11));
  EXPECT_NE(u, token_uniform(8, 3, 11));
  EXPECT_NE(u, token_uniform(7, 4, 11));
  EXPECT_NE(u, token_uniform(7, 3, 12));
  EXPECT_NE(token_uniform(1ull << 32, 0, 0), token_uniform(0, 0, 0));  // high seed bits matter
}

TEST(TokenUniform, IsRoughlyUniform) {
  int below_half = 0;
  double sum = 0.0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    const double u = token_uniform(123, 5, i);
    below_half += u < 0.5;
    sum += u;
  }
  EXPECT_NEAR(below_half / double(n), 0.5, 0.02);
  EXPECT_NEAR(sum / n, 0.5, 0.01);
}

std::vector<float> logits_of(const std::vector<double>& probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(static_cast<float>(std::log(p)));
  return l;
}

int32_t draw(std::vector<float> logits, int k, double p, double u) {
  return sample_token(logits.data(), static_cast<int64_t>(logits.size()), k, p, 1.0, u);
}

TEST(SampleToken, TopOneIsArgmaxWhateverTheDraw) {
  const std::vector<float> l = {0.1f, 2.5f, -1.0f, 2.4f};
  for (double u : {0.0, 0.3, 0.999999})
    EXPECT_EQ(draw(l, 1, 0.0, u), 1);
}

TEST(SampleToken, TopKKeepsTheKLargestAndTies) {
  const std::vector<float> l = {1.0f, 3.0f, 2.0f, 2.0f, 0.0f};
  std::set<int32_t> seen;
  for (int i = 0; i < 1000; ++i) seen.insert(draw(l, 2, 0.0, (i + 0.5) / 1000));
  // The 2nd largest is 2.0, held by two entries: both kept.
  EXPECT_EQ(seen, (std::set<int32_t>{1, 2, 3}));
}

TEST(SampleToken, TopPDropsTheTailButNeverTheLargest) {
  // Ascending probabilities 0.05, 0.15, 0.3, 0.5; cumulative 0.05, 0.2, 0.5, 1.
  // With p = 0.8 entries whose cumulative sum <= 0.2 go.
  const std::vector<float> l = logits_of({0.3, 0.05, 0.5, 0.15});
  std::set<int32_t> seen;
  int zero = 0;
  for (int i = 0; i < 1000; ++i) {
    const int32_t t = draw(l, 0, 0.8, (i + 0.5) / 1000);
    seen.insert(t);
    zero += t == 0;
  }
  EXPECT_EQ(seen, (std::set<int32_t>{0, 2}));
  EXPECT_NEAR(zero / 1000.0, 0.3 / 0.8, 0.01);  // renormalised over what is left
  // A tiny p still keeps the largest.
  EXPECT_EQ(draw(l, 0, 1e-6, 0.0), 2);
  EXPECT_EQ(draw(l, 0, 1e-6, 0.99), 2);
}

TEST(SampleToken, NoFilterFollowsTheSoftmax) {
  const std::vector<float> l = logits_of({0.1, 0.2, 0.3, 0.4});
  std::vector<int> counts(4, 0);
  const int n = 4000;
  for (int i = 0; i < n; ++i) ++counts[draw(l, 0, 0.0, (i + 0.5) / n)];
  for (int k = 0; k < 4; ++k) EXPECT_NEAR(counts[k] / double(n), 0.1 * (k + 1), 0.002);
}

TEST(SampleToken, TemperatureSharpensAndFlattens) {
  const std::vector<float> l = logits_of({0.2, 0.8});
  auto share_of_first = [&](double temperature) {
    int first = 0;
    const int n = 4000;
    for (int i = 0; i < n; ++i) {
      std::vector<float> copy = l;
      first += sample_token(copy.data(), 2, 0, 0.0, temperature, (i + 0.5) / n) == 0;
    }
    return first / double(n);
  };
  EXPECT_NEAR(share_of_first(1.0), 0.2, 0.002);
  // p ∝ q^(1/T): T = 0.5 gives 0.04 / (0.04 + 0.64), T = 2 gives √0.2 / (√0.2 + √0.8).
  EXPECT_NEAR(share_of_first(0.5), 0.04 / 0.68, 0.002);
  EXPECT_NEAR(share_of_first(2.0), std::sqrt(0.2) / (std::sqrt(0.2) + std::sqrt(0.8)), 0.002);
}

}  // namespace
}  // namespace varps
