// normalized_conv2d, the decoder's GroupNorm + SiLU + convolution with the
// norm applied as the convolution reads, is checked on the CPU against the
// ops it replaces: group_norm into a map, then conv2d (then an add).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backend.hpp"
#include "backend_extents.hpp"

namespace varps {
namespace {

std::vector<float> random_vector(size_t n, uint32_t seed, float mean = 0.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(mean, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

Array<float> upload(Backend& be, const std::vector<float>& v) {
  return be.upload(Tensor({static_cast<int64_t>(v.size())}, v));
}

std::vector<float> host(Backend& be, const Array<float>& a) {
  std::vector<float> v(a.size());
  be.download(a.data(), v.size(), v.data());
  return v;
}

double relative_error(const std::vector<float>& got, const std::vector<float>& want) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    num += (static_cast<double>(got[i]) - want[i]) * (static_cast<double>(got[i]) - want[i]);
    den += static_cast<double>(want[i]) * want[i];
  }
  return std::sqrt(num / den);
}

struct Shape {
  int64_t N, Ci, H, W, Co;
  int k, groups;
  bool bias, add_to_out;
};

TEST(NormalizedConv, IsGroupNormThenConvolution) {
  const auto be = make_cpu_backend(2);
  const float eps = 1e-6f;
  for (const Shape& c : {Shape{2, 4, 7, 5, 3, 3, 2, true, false}, Shape{1, 6, 9, 9, 6, 3, 3, true, true},
                         Shape{2, 8, 4, 3, 5, 1, 4, false, true}, Shape{1, 4, 1, 1, 2, 3, 1, false, false},
                         Shape{1, 32, 16, 16, 32, 3, 32, true, true}}) {
    SCOPED_TRACE("Ci " + std::to_string(c.Ci) + " k " + std::to_string(c.k) + " add " + std::to_string(c.add_to_out));
    const int64_t HW = c.H * c.W, out_n = c.N * c.Co * HW;
    // A mean far from zero: the statistics must really be subtracted.
    const Array<float> x = upload(*be, random_vector(c.N * c.Ci * HW, 1, 3.0f));
    const Array<float> gamma = upload(*be, random_vector(c.Ci, 2)), beta = upload(*be, random_vector(c.Ci, 3));
    const Array<float> w = upload(*be, random_vector(c.Co * c.Ci * c.k * c.k, 4)), b = upload(*be, random_vector(c.Co, 5));
    const std::vector<float> start = random_vector(out_n, 6);

    // What it replaces.
    Array<float> normed = be->alloc(x.size()), conv = be->alloc(out_n);
    extents::group_norm(*be, x.data(), c.N, c.Ci, HW, c.groups, gamma.data(), beta.data(), eps, true, normed.data());
    extents::conv2d(*be, normed.data(), c.N, c.Ci, c.H, c.W, w.data(), c.bias ? b.data() : nullptr, c.Co, c.k, 1, c.k / 2,
               c.k / 2, c.k / 2, c.k / 2, conv.data());
    std::vector<float> want = host(*be, conv);
    if (c.add_to_out)
      for (size_t i = 0; i < want.size(); ++i) want[i] += start[i];

    Array<float> stats = be->alloc(c.N * c.groups * 2), out = upload(*be, start);
    extents::group_norm_stats(*be, x.data(), c.N, c.Ci, HW, c.groups, eps, stats.data());
    const NormOnRead norm{stats.data(), gamma.data(), beta.data(), c.groups, true};
    extents::normalized_conv2d(*be, x.data(), c.N, c.Ci, c.H, c.W, norm, w.data(), c.bias ? b.data() : nullptr, c.Co, c.k,
                          c.add_to_out, out.data());
    // SiLU's vector and scalar exp differ in the last bit, and the sums
    // associate differently when adding into out.
    EXPECT_LE(relative_error(host(*be, out), want), 1e-6);
  }
}

TEST(NormalizedConv, StatisticsAreEachGroupsMeanAndInverseDeviation) {
  const auto be = make_cpu_backend(1);
  const int64_t N = 2, C = 6, HW = 35, groups = 3, cpg = C / groups;
  const std::vector<float> xs = random_vector(N * C * HW, 7, -2.0f);
  Array<float> stats = be->alloc(N * groups * 2);
  extents::group_norm_stats(*be, upload(*be, xs).data(), N, C, HW, groups, 1e-5f, stats.data());
  const std::vector<float> got = host(*be, stats);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t g = 0; g < groups; ++g) {
      const float* p = xs.data() + (n * C + g * cpg) * HW;
      double sum = 0.0, sq = 0.0;
      for (int64_t i = 0; i < cpg * HW; ++i) sum += p[i];
      const double mean = sum / static_cast<double>(cpg * HW);
      for (int64_t i = 0; i < cpg * HW; ++i) sq += (p[i] - mean) * (p[i] - mean);
      const double rstd = 1.0 / std::sqrt(sq / static_cast<double>(cpg * HW) + 1e-5);
      EXPECT_FLOAT_EQ(got[(n * groups + g) * 2], static_cast<float>(mean));
      EXPECT_FLOAT_EQ(got[(n * groups + g) * 2 + 1], static_cast<float>(rstd));
    }
}

}  // namespace
}  // namespace varps
