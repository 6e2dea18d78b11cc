// The CPU's Winograd F(4×4, 3×3) convolution against a direct sum in double,
// called directly (on maps of any size) and through the backend: sides that
// are not multiples of 4 (partial tiles at the right and bottom), groups of
// tiles that end mid-row, bias, adding into the output, and GroupNorm +
// SiLU applied as the input is read.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "backend.hpp"
#include "backend_extents.hpp"
#include "cpu/cpu_isa.hpp"
#include "cpu/panel_gemm.hpp"
#include "cpu/winograd.hpp"
#include "product_test_data.hpp"

namespace varps {
namespace {

using test::random_vector;

struct Case {
  int64_t N, Ci, Co, H, W;
  bool bias, add, norm;
};

double silu(double v) { return v / (1.0 + std::exp(-v)); }

// The largest error over the outputs, as a fraction of the sum of the
// terms' magnitudes behind each output (the scale of a float32 sum's error).
double relative_to_terms(const Case& c, const std::vector<float>& x, const std::vector<float>& w,
                         const std::vector<float>& b, const std::vector<float>& start, const NormOnRead* norm,
                         const std::vector<float>& got) {
  const int64_t HW = c.H * c.W;
  const auto input = [&](int64_t n, int64_t ci, int64_t y, int64_t xx) -> double {
    if (y < 0 || y >= c.H || xx < 0 || xx >= c.W) return 0.0;
    const double v = x[(n * c.Ci + ci) * HW + y * c.W + xx];
    if (!norm) return v;
    const int64_t g = ci / (c.Ci / norm->groups);
    const float* st = norm->stats + (n * norm->groups + g) * 2;
    return silu((v - st[0]) * norm->gamma[ci] * st[1] + norm->beta[ci]);
  };
  double worst = 0.0;
  for (int64_t n = 0; n < c.N; ++n)
    for (int64_t co = 0; co < c.Co; ++co)
      for (int64_t y = 0; y < c.H; ++y)
        for (int64_t xx = 0; xx < c.W; ++xx) {
          const size_t o = static_cast<size_t>((n * c.Co + co) * HW + y * c.W + xx);
          double want = (c.add ? start[o] : 0.0) + (c.bias ? b[co] : 0.0), terms = std::fabs(want) + 1e-30;
          for (int64_t ci = 0; ci < c.Ci; ++ci)
            for (int ky = 0; ky < 3; ++ky)
              for (int kx = 0; kx < 3; ++kx) {
                const double t = input(n, ci, y + ky - 1, xx + kx - 1) * w[((co * c.Ci + ci) * 3 + ky) * 3 + kx];
                want += t;
                terms += std::fabs(t);
              }
          worst = std::max(worst, std::fabs(want - got[o]) / terms);
        }
  return worst;
}

// The transforms' coefficients (up to 5 in Bᵀ, 8 in Aᵀ) amplify float32's
// rounding: measured worst cases 5.8e-7 … 4.1e-6 of the terms' sum over the
// shapes below (4 input channels the worst), against 1e-7 and less for the
// direct sum. A wrong coefficient, tile offset or border gives 1e-2 and more.
constexpr double kBound = 1e-5;

TEST(Winograd, TakesThe3x3Stride1ConvolutionsOfLargeEnoughMaps) {
  EXPECT_TRUE(cpu::winograd_takes(160, 160, 256, 256, 3, 1, 1, 1, 1, 1));
  EXPECT_TRUE(cpu::winograd_takes(3, 5, 32, 40, 3, 1, 1, 1, 1, 1));
  EXPECT_FALSE(cpu::winograd_takes(32, 32, 16, 16, 3, 1, 1, 1, 1, 1)) << "a latent-sized map";
  EXPECT_FALSE(cpu::winograd_takes(160, 160, 64, 64, 3, 2, 0, 0, 1, 1)) << "stride 2";
  EXPECT_FALSE(cpu::winograd_takes(160, 160, 64, 64, 1, 1, 0, 0, 0, 0)) << "1x1";
  EXPECT_FALSE(cpu::winograd_takes(640, 640, 32, 32, 3, 1, 1, 1, 1, 1)) << "59 MB of transformed weights";
}

// A case's data (x, weights, bias, what the output held, the norm and its
// statistics) and winograd_convolve()'s output on it, with what `isa` allows.
struct Convolved {
  std::vector<float> x, w, b, start, gamma, beta, stats, got;
  NormOnRead norm;
};

Convolved convolve(Backend& be, const Case& c, const cpu::CpuIsa& isa) {
  Convolved r;
  const int64_t HW = c.H * c.W;
  r.x = random_vector(c.N * c.Ci * HW, 1, 1.0f, c.norm ? 2.0f : 0.0f);
  r.w = random_vector(c.Co * c.Ci * 9, 2, 0.2f);
  r.b = random_vector(c.Co, 3);
  r.start = random_vector(c.N * c.Co * HW, 4);
  r.got = r.start;
  // The weights as the backend keeps a convolution's (A panels).
  std::vector<float> panels(cpu::a_panel_floats(c.Co, c.Ci * 9));
  cpu::pack_a_panels(r.w.data(), c.Co, c.Ci * 9, c.Ci * 9, panels.data());
  const int groups = c.Ci % 2 == 0 ? 2 : 1;  // groups divide the channels
  r.gamma = random_vector(c.Ci, 5, 0.5f, 1.0f);
  r.beta = random_vector(c.Ci, 6, 0.5f);
  r.stats.resize(c.N * groups * 2);
  const Array<float> xa = be.upload(Tensor({static_cast<int64_t>(r.x.size())}, r.x));
  Array<float> sa = be.alloc(r.stats.size());
  extents::group_norm_stats(be, xa.data(), c.N, c.Ci, HW, groups, 1e-6f, sa.data());
  be.download(sa.data(), r.stats.size(), r.stats.data());
  r.norm = NormOnRead{r.stats.data(), r.gamma.data(), r.beta.data(), groups, true};
  cpu::ScratchPool scratch;
  cpu::winograd_convolve(r.x.data(), c.N, c.Ci, c.H, c.W, c.norm ? &r.norm : nullptr, panels.data(),
                         c.bias ? r.b.data() : nullptr, c.Co, c.add, r.got.data(), scratch, isa);
  return r;
}

std::string describe(const Case& c) {
  return "N " + std::to_string(c.N) + " Ci " + std::to_string(c.Ci) + " Co " + std::to_string(c.Co) + " " +
         std::to_string(c.H) + "x" + std::to_string(c.W);
}

// Rows of 2 to 25 tiles. Where the processor has AVX-512 the 16-tile
// transforms take those of 10, 16 and 25 (10 and 25 with vectors that end
// past the map) and leave those that 16 would pad further (2, 3, 4 and 18
// tiles) to the 8-tile ones.
const Case kCases[] = {Case{1, 3, 5, 8, 8, true, false, false},     Case{2, 16, 7, 10, 13, false, true, false},
                       Case{1, 32, 32, 17, 9, true, true, true},   Case{1, 8, 13, 9, 70, true, false, true},
                       Case{3, 4, 6, 12, 12, false, false, false}, Case{1, 8, 5, 9, 40, true, true, true},
                       Case{2, 6, 17, 13, 64, true, false, false}, Case{1, 5, 9, 6, 99, false, true, true}};

TEST(Winograd, MatchesTheDirectSumInDouble) {
  const auto be = make_cpu_backend(2);
  // The build's own kernels (the 8-tile transforms, the AVX2 or portable
  // tile), then what this processor allows.
  for (const cpu::CpuIsa& isa : {cpu::CpuIsa{}, cpu::detect_cpu_isa()})
    for (const Case& c : kCases) {
      SCOPED_TRACE(describe(c) + " isa " + isa.name());
      const Convolved r = convolve(*be, c, isa);
      EXPECT_LE(relative_to_terms(c, r.x, r.w, r.b, r.start, c.norm ? &r.norm : nullptr, r.got), kBound);
    }
}

// The AVX-512 path (16-tile transforms and the AVX-512 tile) computes each
// output with the AVX2 path's operations: the same bits.
TEST(Winograd, AVX512GivesTheAVX2PathsBits) {
  const cpu::CpuIsa host = cpu::detect_cpu_isa();
  if (!host.avx512) GTEST_SKIP() << "this processor has no AVX-512";
  cpu::CpuIsa avx2 = host;
  avx2.avx512 = avx2.avx512_bf16 = avx2.avx512_vnni = false;
  const auto be = make_cpu_backend(2);
  for (const Case& c : kCases) {
    SCOPED_TRACE(describe(c));
    EXPECT_EQ(convolve(*be, c, host).got, convolve(*be, c, avx2).got);
  }
}

// Through the backend's own op, with a weight uploaded as the decoder's are.
TEST(Winograd, IsWhatTheCpuBackendsConvolutionComputes) {
  const auto be = make_cpu_backend(2);
  const Case c{1, 24, 20, 33, 37, true, false, false};
  ASSERT_TRUE(cpu::winograd_takes(c.Ci, c.Co, c.H, c.W, 3, 1, 1, 1, 1, 1));
  const int64_t HW = c.H * c.W;
  const auto x = random_vector(c.Ci * HW, 7), w = random_vector(c.Co * c.Ci * 9, 8, 0.2f), b = random_vector(c.Co, 9);
  const Array<float> xa = be->upload(Tensor({c.Ci * HW}, x)), ba = be->upload(Tensor({c.Co}, b));
  const Array<MatrixElement> wa = be->upload_matrix(Tensor({c.Co, c.Ci, 3, 3}, w));
  Array<float> y = be->alloc(c.Co * HW);
  extents::conv2d(*be, xa.data(), 1, c.Ci, c.H, c.W, wa.data(), ba.data(), c.Co, 3, 1, 1, 1, 1, 1, y.data());
  std::vector<float> got(c.Co * HW);
  be->download(y.data(), got.size(), got.data());
  EXPECT_LE(relative_to_terms(c, x, w, b, {}, nullptr, got), kBound);
}

}  // namespace
}  // namespace varps
