// The CPU backend's matrix products (cpu/panel_gemm.hpp): against a double
// reference over shapes that cross the register tile's 6 rows and 16
// columns and the blocks of A, B and k, with every epilogue; a row's result
// independent of the rows beside it and of the thread count; weights packed
// at upload giving the same bits as weights packed for the call.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <random>

#include "backend.hpp"
#include "backend_extents.hpp"
#include "cpu/cpu_isa.hpp"
#include "cpu/panel_gemm.hpp"
#include "product_test_data.hpp"
#include "test_files.hpp"

namespace varps {
namespace {

using test::gelu;
using test::random_vector;


struct Product {
  int64_t M, N, K;
};

// Sequential float32 sums over K of terms up to 1 in size: the error bound
// grows with K (each FMA rounds once), with headroom.
double bound(int64_t K) { return 4e-7 * static_cast<double>(K) + 1e-6; }

TEST(PanelProduct, MatchesADoubleReferenceWithEveryEpilogue) {
  for (const Product p : {Product{1, 1, 1}, Product{5, 15, 7}, Product{6, 16, 256}, Product{7, 17, 257},
                          Product{13, 33, 600}, Product{100, 40, 3}, Product{2, 1000, 64}, Product{37, 9, 0},
                          // rows past one block of A, weights past one block of B (6 MiB), k past one block (4096)
                          Product{70, 1700, 1000}, Product{13, 20, 4500}}) {
    const auto x = random_vector(p.M * p.K, 1), w = random_vector(p.N * p.K, 2), bias = random_vector(p.N, 3),
               start = random_vector(p.M * p.N, 4);
    std::vector<float> panels(cpu::b_panel_floats(p.N, p.K));
    cpu::pack_b_panels_from_rows(w.data(), p.N, p.K, p.K, panels.data());
    std::vector<float> a_panels(cpu::a_panel_floats(p.M, p.K));
    cpu::pack_a_panels(x.data(), p.M, p.K, p.K, a_panels.data());
    for (int mode = 0; mode < 4; ++mode) {
      const bool with_bias = mode & 1, accumulate = mode == 2, with_gelu = mode == 3, packed_a = mode >= 2;
      SCOPED_TRACE("M " + std::to_string(p.M) + " N " + std::to_string(p.N) + " K " + std::to_string(p.K) + " mode " +
                   std::to_string(mode));
      std::vector<float> c = start;
      const cpu::AOperand a = packed_a ? cpu::AOperand{a_panels.data(), 0, true} : cpu::AOperand{x.data(), p.K, false};
      cpu::multiply_panels(a, cpu::BOperand::panels(panels.data(), p.K), p.M, p.N, p.K,
                           cpu::ProductOutput{c.data(), p.N, accumulate, with_bias ? bias.data() : nullptr, with_gelu});
      double worst = 0.0;
      for (int64_t m = 0; m < p.M; ++m)
        for (int64_t n = 0; n < p.N; ++n) {
          double want = accumulate ? start[m * p.N + n] : 0.0;
          for (int64_t k = 0; k < p.K; ++k) want += static_cast<double>(x[m * p.K + k]) * w[n * p.K + k];
          if (with_bias) want += bias[n];
          if (with_gelu) want = gelu(want);
          worst = std::max(worst, std::fabs(want - c[m * p.N + n]));
        }
      EXPECT_LE(worst, bound(p.K));
    }
  }
}

// A row's bits do not depend on how many rows the product has, where the
// row falls in the register tile, or how many threads share the product:
// the property that keeps a stream's image independent of its batch.
TEST(PanelProduct, ARowsBitsIgnoreItsNeighboursAndTheThreads) {
  const int64_t N = 70, K = 700, rows = 20;
  const auto x = random_vector(rows * K, 5), w = random_vector(N * K, 6), bias = random_vector(N, 7);
  std::vector<float> panels(cpu::b_panel_floats(N, K));
  cpu::pack_b_panels_from_rows(w.data(), N, K, K, panels.data());
  const auto product = [&](int64_t first, int64_t M, int threads) {
    std::vector<float> c(M * N);
    const int before = omp_get_max_threads();
    omp_set_num_threads(threads);
    cpu::multiply_panels(cpu::AOperand{x.data() + first * K, K, false}, cpu::BOperand::panels(panels.data(), K), M, N, K,
                         cpu::ProductOutput{c.data(), N, false, bias.data(), true});
    omp_set_num_threads(before);
    return c;
  };
  const std::vector<float> all = product(0, rows, 2);
  for (int64_t first = 0; first < rows; first += 3)
    for (int64_t M : {int64_t{1}, int64_t{2}, int64_t{7}})
      for (int threads : {1, 2, 3}) {
        if (first + M > rows) continue;
        const std::vector<float> part = product(first, M, threads);
        for (int64_t m = 0; m < M; ++m)
          for (int64_t n = 0; n < N; ++n)
            ASSERT_EQ(part[m * N + n], all[(first + m) * N + n])
                << "row " << first + m << " of " << M << " rows, " << threads << " threads";
      }
}

// The AVX-512 tile runs the AVX2 tile's FMA chains on wider registers: the
// same bits for every shape, epilogue, k block and operand form.
TEST(PanelProduct, Avx512TileGivesTheAvx2TilesBits) {
  cpu::CpuIsa wide = cpu::detect_cpu_isa();
  if (!wide.avx512) GTEST_SKIP() << "this processor has no AVX-512";
  const cpu::CpuIsa narrow = cpu::capped_cpu_isa(wide, "avx2");
  for (const Product p : {Product{7, 17, 257}, Product{13, 64, 600}, Product{6, 48, 33}, Product{70, 1700, 1000},
                          Product{13, 40, 4500}}) {
    const auto x = random_vector(p.M * p.K, 1), w = random_vector(p.N * p.K, 2), bias = random_vector(p.N, 3),
               start = random_vector(p.M * p.N, 4);
    std::vector<float> panels(cpu::b_panel_floats(p.N, p.K));
    cpu::pack_b_panels_from_rows(w.data(), p.N, p.K, p.K, panels.data());
    for (int mode = 0; mode < 4; ++mode) {
      SCOPED_TRACE("M " + std::to_string(p.M) + " N " + std::to_string(p.N) + " K " + std::to_string(p.K) + " mode " +
                   std::to_string(mode));
      const cpu::ProductOutput tmpl{nullptr, p.N, mode == 2, mode & 1 ? bias.data() : nullptr, mode == 3};
      std::vector<float> c1 = start, c2 = start;
      cpu::ProductOutput o1 = tmpl, o2 = tmpl;
      o1.c = c1.data();
      o2.c = c2.data();
      cpu::multiply_panels(cpu::AOperand{x.data(), p.K, false}, cpu::BOperand::panels(panels.data(), p.K), p.M, p.N,
                           p.K, o1, wide);
      cpu::multiply_panels(cpu::AOperand{x.data(), p.K, false}, cpu::BOperand::panels(panels.data(), p.K), p.M, p.N,
                           p.K, o2, narrow);
      ASSERT_EQ(c1, c2);
    }
  }
  // B as rows of a row-major [K, N] array (the attention's values).
  const int64_t M = 9, N = 64, K = 100;
  const auto x = random_vector(M * K, 5), b = random_vector(K * N, 6);
  std::vector<float> c1(M * N), c2(M * N);
  cpu::multiply_panels(cpu::AOperand{x.data(), K, false}, cpu::BOperand::rows(b.data(), N), M, N, K,
                       cpu::ProductOutput{c1.data(), N}, wide);
  cpu::multiply_panels(cpu::AOperand{x.data(), K, false}, cpu::BOperand::rows(b.data(), N), M, N, K,
                       cpu::ProductOutput{c2.data(), N}, narrow);
  EXPECT_EQ(c1, c2);
}

TEST(CpuLinear, WeightsPackedAtUploadGiveTheBitsOfPlainOnes) {
  const auto be = make_cpu_backend(2);
  const int64_t M = 11, K = 300, N = 45;
  const auto xs = random_vector(M * K, 8), ws = random_vector(N * K, 9), bs = random_vector(N, 10);
  const Array<float> x = be->upload(Tensor({M * K}, xs)), b = be->upload(Tensor({N}, bs));
  const Array<MatrixElement> packed = be->upload_matrix(Tensor({N, K}, ws));
  const Array<float> plain = be->upload(Tensor({N * K}, ws));
  EXPECT_EQ(be->matrix_bytes({N, K}), be->array_bytes(cpu::b_panel_floats(N, K), sizeof(float)));
  EXPECT_EQ(be->matrix_bytes({N * K}), be->array_bytes(static_cast<uint64_t>(N * K), sizeof(float))) << "not a matrix: kept as is";
  for (bool gelu : {false, true}) {
    Array<float> y1 = be->alloc(M * N), y2 = be->alloc(M * N);
    if (gelu) {
      extents::linear_gelu(*be, x.data(), M, K, packed.data(), b.data(), N, y1.data());
      extents::linear_gelu(*be, x.data(), M, K, plain.data(), b.data(), N, y2.data());
    } else {
      extents::linear(*be, x.data(), M, K, packed.data(), b.data(), N, y1.data());
      extents::linear(*be, x.data(), M, K, plain.data(), b.data(), N, y2.data());
    }
    std::vector<float> h1(M * N), h2(M * N);
    be->download(y1.data(), h1.size(), h1.data());
    be->download(y2.data(), h2.size(), h2.data());
    EXPECT_EQ(h1, h2);
  }
}

TEST(CpuLinear, APackedWeightUsedAtAnotherShapeIsRefused) {
  const auto be = make_cpu_backend(1);
  const Array<MatrixElement> w = be->upload_matrix(Tensor({8, 4}, random_vector(32, 11)));
  Array<float> x = be->zeros(16), y = be->alloc(64);
  const std::string e = test::error_of([&] { extents::linear(*be, x.data(), 2, 8, w.data(), nullptr, 4, y.data()); });
  EXPECT_CONTAINS(e, "packed weight of 8x4 used as one of 4x8");
}

TEST(CpuMemory, EmptyArraysCopyNothing) {
  // An empty tensor's data and an empty array may be null; no copy may pass
  // them on to memcpy (undefined behaviour, reported by UBSan).
  const auto be = make_cpu_backend(1);
  const Tensor empty(Shape{0});
  Array<float> a = be->upload(empty), z = be->zeros(0);
  be->copy(a.data(), 0, z.data());
  be->download(a.data(), 0, nullptr);
  be->upload_into_i32(nullptr, 0, nullptr);
  be->download_i32(nullptr, 0, nullptr);
  EXPECT_EQ(a.size(), 0u);
}

}  // namespace
}  // namespace varps
