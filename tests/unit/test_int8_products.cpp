// int8 products on the CPU (cpu/int8_panels.hpp): the quantisation of a row;
// products against a double reference of the quantised operands over shapes
// that cross the tile's 6 rows and 16/32 columns, depths that are not whole
// quads, and the blocks of A and B, with every epilogue; a row's bits
// independent of its neighbours and the threads; the AVX512_VNNI tile
// against the AVX2 one (skipped where the processor lacks the extension);
// NaN kept; the backend's int8 weights.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "backend.hpp"
#include "backend_extents.hpp"
#include "cpu/cpu_isa.hpp"
#include "cpu/int8_panels.hpp"
#include "product_test_data.hpp"
#include "test_files.hpp"

namespace varps {
namespace {

using test::bits_of;
using test::gelu;
using test::random_vector;


cpu::CpuIsa without_vnni() {
  cpu::CpuIsa isa = cpu::detect_cpu_isa();
  isa.avx512_vnni = false;
  return isa;
}

// Row r quantised as the product does: its scale and values.
struct Quantised {
  std::vector<int8_t> q;
  float scale;
};
Quantised quantised(const float* x, int64_t K) {
  Quantised r{std::vector<int8_t>(K), 0.0f};
  r.scale = cpu::quantize_row(x, K, r.q.data());
  return r;
}

TEST(Int8, QuantisesARowToItsLargestMagnitude) {
  const std::vector<float> x = {0.5f, -1.0f, 0.25f, 0.0f, 1.0f / 127};
  const Quantised r = quantised(x.data(), 5);
  EXPECT_FLOAT_EQ(r.scale, 1.0f / 127);
  EXPECT_EQ(r.q, (std::vector<int8_t>{64, -127, 32, 0, 1}));  // 63.5 rounds to even
  const std::vector<float> zeros(7, 0.0f);
  EXPECT_EQ(quantised(zeros.data(), 7).scale, 0.0f);
  std::vector<float> bad = {1.0f, NAN, 2.0f};
  EXPECT_TRUE(std::isnan(quantised(bad.data(), 3).scale));
  bad[1] = INFINITY;
  EXPECT_TRUE(std::isnan(quantised(bad.data(), 3).scale));
  // In a row long enough for the vector path: a NaN or an infinity in its
  // vectors or in its tail, and the largest magnitude in either.
  for (const int64_t at : {0, 5, 12, 17}) {
    for (const float v : {NAN, -INFINITY}) {
      std::vector<float> row = random_vector(19, 32);
      row[at] = v;
      EXPECT_TRUE(std::isnan(quantised(row.data(), 19).scale)) << at;
    }
    std::vector<float> row = random_vector(19, 33, 0.5f);
    row[at] = -3.0f;
    EXPECT_EQ(quantised(row.data(), 19).scale, 3.0f / 127) << at;
  }
}

// The vector path against the formula, value by value: ties to even, the
// largest magnitude to ±127.
TEST(Int8, QuantisesEveryValueAsTheFormulaSays) {
  std::vector<float> x = random_vector(37, 30, 3.0f);
  x[3] = 127.0f;  // scale 1: the ties below are exact
  x[0] = 2.5f, x[1] = 3.5f, x[2] = -2.5f, x[4] = -126.5f, x[9] = 0.5f, x[17] = -0.5f;
  const Quantised r = quantised(x.data(), 37);
  EXPECT_EQ(r.scale, 1.0f);
  for (size_t k = 0; k < x.size(); ++k) {
    const float want = std::clamp(std::nearbyint(x[k] * (127.0f / 127.0f)), -127.0f, 127.0f);
    EXPECT_EQ(r.q[k], static_cast<int8_t>(want)) << k << ": " << x[k];
  }
  EXPECT_EQ(r.q[0], 2);
  EXPECT_EQ(r.q[1], 4);
  EXPECT_EQ(r.q[2], -2);
  EXPECT_EQ(r.q[4], -126);
  EXPECT_EQ(r.q[9], 0);
  // A scale that is not a power of two.
  std::vector<float> y = random_vector(45, 31);
  const Quantised s = quantised(y.data(), 45);
  float amax = 0.0f;
  for (float v : y) amax = std::max(amax, std::abs(v));
  EXPECT_EQ(s.scale, amax / 127.0f);
  for (size_t k = 0; k < y.size(); ++k)
    EXPECT_EQ(s.q[k], static_cast<int8_t>(std::clamp(std::nearbyint(y[k] * (127.0f / amax)), -127.0f, 127.0f))) << k;
}

struct Product {
  int64_t M, N, K;
};

void check_against_double(const cpu::CpuIsa& isa) {
  for (const Product p : {Product{1, 1, 1}, Product{5, 15, 7}, Product{6, 16, 256}, Product{7, 17, 258},
                          Product{13, 33, 601}, Product{100, 40, 3}, Product{2, 1000, 64}, Product{37, 9, 0},
                          Product{70, 1700, 1001}, Product{3, 48, 4500}}) {
    const auto x = random_vector(p.M * p.K, 1), w = random_vector(p.N * p.K, 2), bias = random_vector(p.N, 3);
    std::vector<unsigned char> panels(cpu::int8_b_panel_bytes(p.N, p.K));
    cpu::pack_int8_b_panels_from_rows(w.data(), p.N, p.K, p.K, panels.data());
    std::vector<Quantised> qx, qw;
    for (int64_t m = 0; m < p.M; ++m) qx.push_back(quantised(x.data() + m * p.K, p.K));
    for (int64_t n = 0; n < p.N; ++n) qw.push_back(quantised(w.data() + n * p.K, p.K));
    for (int mode = 0; mode < 3; ++mode) {
      const bool with_bias = mode >= 1, with_gelu = mode == 2;
      SCOPED_TRACE("M " + std::to_string(p.M) + " N " + std::to_string(p.N) + " K " + std::to_string(p.K) + " mode " +
                   std::to_string(mode) + " isa " + isa.name());
      std::vector<float> c(p.M * p.N, NAN);
      cpu::multiply_int8_panels(x.data(), p.K, panels.data(), p.M, p.N, p.K,
                                cpu::ProductOutput{c.data(), p.N, false, with_bias ? bias.data() : nullptr, with_gelu},
                                isa);
      double worst = 0.0;
      for (int64_t m = 0; m < p.M; ++m)
        for (int64_t n = 0; n < p.N; ++n) {
          int64_t sum = 0;
          for (int64_t k = 0; k < p.K; ++k) sum += int64_t{qx[m].q[k]} * qw[n].q[k];
          double want = static_cast<double>(sum) * qx[m].scale * qw[n].scale;
          if (with_bias) want += bias[n];
          if (with_gelu) want = gelu(want);
          worst = std::max(worst, std::abs(c[m * p.N + n] - want) / (1.0 + std::abs(want)));
        }
      EXPECT_LE(worst, 2e-6);
    }
  }
}

TEST(Int8Product, MatchesADoubleReferenceOfTheQuantisedOperands) { check_against_double(without_vnni()); }

TEST(Int8Product, MatchesADoubleReferenceWithAvx512Vnni) {
  if (!cpu::detect_cpu_isa().avx512_vnni) GTEST_SKIP() << "this processor has no AVX512_VNNI";
  check_against_double(cpu::detect_cpu_isa());
}

// The quantisation is the whole error: against the float32 product it is a
// few hundredths of the product's scale, not more, and not none.
TEST(Int8Product, ErrorIsTheQuantisations) {
  const int64_t M = 4, N = 32, K = 512;
  const auto x = random_vector(M * K, 5), w = random_vector(N * K, 6);
  std::vector<unsigned char> panels(cpu::int8_b_panel_bytes(N, K));
  cpu::pack_int8_b_panels_from_rows(w.data(), N, K, K, panels.data());
  std::vector<float> c(M * N);
  cpu::multiply_int8_panels(x.data(), K, panels.data(), M, N, K, cpu::ProductOutput{c.data(), N}, cpu::detect_cpu_isa());
  double num = 0.0, den = 0.0;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double exact = 0.0;
      for (int64_t k = 0; k < K; ++k) exact += static_cast<double>(x[m * K + k]) * w[n * K + k];
      num += (c[m * N + n] - exact) * (c[m * N + n] - exact);
      den += exact * exact;
    }
  const double err = std::sqrt(num / den);
  EXPECT_GT(err, 1e-3);
  EXPECT_LT(err, 3e-2);
}

void expect_rows_independent(const cpu::CpuIsa& isa) {
  const int64_t M = 20, N = 70, K = 301;
  const auto x = random_vector(M * K, 7), w = random_vector(N * K, 8), bias = random_vector(N, 9);
  std::vector<unsigned char> panels(cpu::int8_b_panel_bytes(N, K));
  cpu::pack_int8_b_panels_from_rows(w.data(), N, K, K, panels.data());
  test::expect_rows_independent(x, M, N, K, [&](const float* a, int64_t rows, float* c) {
    cpu::multiply_int8_panels(a, K, panels.data(), rows, N, K, cpu::ProductOutput{c, N, false, bias.data(), true}, isa);
  });
}

TEST(Int8Product, ARowsBitsIgnoreItsNeighboursTheThreadsAndTheTile) {
  expect_rows_independent(without_vnni());
  const cpu::CpuIsa host = cpu::detect_cpu_isa();
  if (!host.avx512_vnni) return;
  expect_rows_independent(host);
  // The two tiles' integer sums are the same, so are the products' bits.
  const int64_t M = 9, N = 40, K = 333;
  const auto x = random_vector(M * K, 10), w = random_vector(N * K, 11);
  std::vector<unsigned char> panels(cpu::int8_b_panel_bytes(N, K));
  cpu::pack_int8_b_panels_from_rows(w.data(), N, K, K, panels.data());
  std::vector<float> a(M * N), b(M * N);
  cpu::multiply_int8_panels(x.data(), K, panels.data(), M, N, K, cpu::ProductOutput{a.data(), N}, host);
  cpu::multiply_int8_panels(x.data(), K, panels.data(), M, N, K, cpu::ProductOutput{b.data(), N}, without_vnni());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(bits_of(a[i]), bits_of(b[i])) << i;
}

TEST(Int8Product, ANanInARowGivesNanInItsOutputsAlone) {
  const int64_t M = 3, N = 16, K = 32;
  auto x = random_vector(M * K, 12);
  x[K + 5] = NAN;
  const auto w = random_vector(N * K, 13);
  std::vector<unsigned char> panels(cpu::int8_b_panel_bytes(N, K));
  cpu::pack_int8_b_panels_from_rows(w.data(), N, K, K, panels.data());
  std::vector<float> c(M * N);
  cpu::multiply_int8_panels(x.data(), K, panels.data(), M, N, K, cpu::ProductOutput{c.data(), N}, cpu::detect_cpu_isa());
  for (int64_t n = 0; n < N; ++n) {
    EXPECT_TRUE(std::isfinite(c[n]));
    EXPECT_TRUE(std::isnan(c[N + n]));
    EXPECT_TRUE(std::isfinite(c[2 * N + n]));
  }
}

TEST(Int8Backend, KeepsLinearWeightsInInt8) {
  const int64_t M = 4, N = 40, K = 96;
  const auto be32 = make_cpu_backend(1, "fp32"), be8 = make_cpu_backend(1, "int8");
  EXPECT_EQ(be8->matrix_element_bytes(), 1u);
  // (oneDNN's layout pads a small weight's sides to its blocks.)
  EXPECT_LT(be8->matrix_bytes({256, 256}), be32->matrix_bytes({256, 256}) * 3 / 10);
  EXPECT_EQ(be8->matrix_bytes({8, 4, 3, 3}), be32->matrix_bytes({8, 4, 3, 3})) << "convolution weights stay float32";
  EXPECT_NE(be8->info().find("int8"), std::string::npos);
  Tensor xt{{M, K}, random_vector(M * K, 14)}, wt{{N, K}, random_vector(N * K, 15)}, bt{{N}, random_vector(N, 16)};
  std::vector<float> y32(M * N), y8(M * N);
  for (auto* be : {be32.get(), be8.get()}) {
    const Array<float> x = be->upload(xt), b = be->upload(bt);
    const Array<MatrixElement> w = be->upload_matrix(wt);
    Array<float> y = be->alloc(M * N);
    extents::linear(*be, x.data(), M, K, w.data(), b.data(), N, y.data());
    be->download(y.data(), M * N, be == be32.get() ? y32.data() : y8.data());
  }
  double worst = 0.0;
  for (size_t i = 0; i < y32.size(); ++i) worst = std::max(worst, static_cast<double>(std::abs(y8[i] - y32[i])));
  EXPECT_GT(worst, 1e-4) << "the int8 backend gave float32 products";
  EXPECT_LT(worst, 0.2);
}

TEST(Int8Backend, OnlyTheCpuTakesInt8) {
  EXPECT_THROW(make_backend(BackendOptions{"cuda", 0, "int8"}), Error);
  EXPECT_NO_THROW(make_backend(BackendOptions{"cpu", 1, "int8"}));
}

}  // namespace
}  // namespace varps
