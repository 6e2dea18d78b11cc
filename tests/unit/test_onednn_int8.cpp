// The int8 products through oneDNN (cpu/onednn_int8.hpp) give the int8
// panels' bits: over shapes that cross oneDNN's blocks and the panels'
// tiles, depths that are not whole quads, strided outputs and every
// epilogue; a row's bits independent of its neighbours and the threads; a
// NaN kept to its row; the backend choosing it and giving the same images'
// products. Skipped where the build has no oneDNN or the processor neither
// AVX512_VNNI nor AMX-INT8. Also: the ISA cap's treatment of AMX and oneDNN.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <vector>

#include "backend_extents.hpp"
#include "cpu/cpu_backend.hpp"
#include "cpu/cpu_isa.hpp"
#include "cpu/int8_panels.hpp"
#include "cpu/onednn_int8.hpp"
#include "product_test_data.hpp"
#include "varps/error.hpp"

namespace varps {
namespace {

using test::bits_of;
using test::random_vector;

// Why oneDNN's products cannot run here, or "" where they can.
std::string why_not_onednn() {
  const cpu::CpuIsa isa = cpu::detect_cpu_isa();
  if (!isa.onednn) return "this build has no oneDNN (VARPS_ONEDNN)";
  if (!cpu::OnednnInt8::serves(isa)) return "this processor has neither AVX512_VNNI nor AMX-INT8 for oneDNN";
  return "";
}

#define SKIP_WITHOUT_ONEDNN()                                    \
  if (const std::string why = why_not_onednn(); !why.empty()) \
  GTEST_SKIP() << why

struct Case {
  int64_t M, N, K, ldc;
  bool bias, gelu;
};

TEST(OnednnInt8, GivesTheInt8PanelsBits) {
  SKIP_WITHOUT_ONEDNN();
  const cpu::CpuIsa isa = cpu::detect_cpu_isa();
  const cpu::OnednnInt8 onednn(isa);
  cpu::ScratchPool scratch;
  const Case cases[] = {{1, 16, 4, 16, false, false},   {2, 33, 7, 33, true, false},   {7, 70, 301, 75, true, true},
                        {50, 130, 1000, 130, false, true}, {513, 96, 64, 96, true, false}, {300, 512, 256, 520, true, true},
                        {6, 1, 3, 1, true, true}};
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << c.M << "x" << c.N << "x" << c.K << " ldc " << c.ldc);
    const auto x = random_vector(c.M * c.K, 21), w = random_vector(c.N * c.K, 22, 0.1f), bias = random_vector(c.N, 23);
    std::vector<unsigned char> panels(cpu::int8_b_panel_bytes(c.N, c.K));
    cpu::pack_int8_b_panels_from_rows(w.data(), c.N, c.K, c.K, panels.data());
    std::vector<unsigned char> blocked(onednn.weight_bytes(c.N, c.K));
    onednn.pack_weight(w.data(), c.N, c.K, c.K, blocked.data());
    std::vector<float> want(c.M * c.ldc, -7.0f), got(c.M * c.ldc, -7.0f);
    const float* b = c.bias ? bias.data() : nullptr;
    cpu::multiply_int8_panels(x.data(), c.K, panels.data(), c.M, c.N, c.K,
                              cpu::ProductOutput{want.data(), c.ldc, false, b, c.gelu}, isa);
    onednn.multiply(x.data(), c.K, blocked.data(), c.M, c.N, c.K, cpu::ProductOutput{got.data(), c.ldc, false, b, c.gelu},
                    scratch);
    for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(bits_of(got[i]), bits_of(want[i])) << i;
  }
}

TEST(OnednnInt8, ARowsBitsIgnoreItsNeighboursAndTheThreads) {
  SKIP_WITHOUT_ONEDNN();
  const cpu::OnednnInt8 onednn(cpu::detect_cpu_isa());
  cpu::ScratchPool scratch;
  const int64_t M = 40, N = 70, K = 301;
  const auto x = random_vector(M * K, 24), w = random_vector(N * K, 25), bias = random_vector(N, 26);
  std::vector<unsigned char> blocked(onednn.weight_bytes(N, K));
  onednn.pack_weight(w.data(), N, K, K, blocked.data());
  test::expect_rows_independent(x, M, N, K, [&](const float* a, int64_t rows, float* c) {
    onednn.multiply(a, K, blocked.data(), rows, N, K, cpu::ProductOutput{c, N, false, bias.data(), true}, scratch);
  });
}

TEST(OnednnInt8, ANanInARowGivesNanInItsOutputsAlone) {
  SKIP_WITHOUT_ONEDNN();
  const cpu::OnednnInt8 onednn(cpu::detect_cpu_isa());
  cpu::ScratchPool scratch;
  const int64_t M = 3, N = 16, K = 32;
  auto x = random_vector(M * K, 27);
  x[K + 5] = NAN;
  const auto w = random_vector(N * K, 28);
  std::vector<unsigned char> blocked(onednn.weight_bytes(N, K));
  onednn.pack_weight(w.data(), N, K, K, blocked.data());
  std::vector<float> c(M * N);
  onednn.multiply(x.data(), K, blocked.data(), M, N, K, cpu::ProductOutput{c.data(), N}, scratch);
  for (int64_t n = 0; n < N; ++n) {
    EXPECT_TRUE(std::isfinite(c[n]));
    EXPECT_TRUE(std::isnan(c[N + n]));
    EXPECT_TRUE(std::isfinite(c[2 * N + n]));
  }
}

TEST(OnednnInt8, RefusesToAddToItsOutput) {
  SKIP_WITHOUT_ONEDNN();
  const cpu::OnednnInt8 onednn(cpu::detect_cpu_isa());
  cpu::ScratchPool scratch;
  std::vector<unsigned char> blocked(onednn.weight_bytes(16, 8));
  std::vector<float> x(8, 1.0f), c(16);
  EXPECT_THROW(onednn.multiply(x.data(), 8, blocked.data(), 1, 16, 8, cpu::ProductOutput{c.data(), 16, true}, scratch),
               Error);
}

// The backend takes oneDNN for its int8 weights where it serves, the panels
// otherwise (VARPS_CPU_ONEDNN=off), and the two give the same bits.
TEST(OnednnInt8, TheBackendsProductsAreThePanelsOnes) {
  SKIP_WITHOUT_ONEDNN();
  cpu::CpuIsa with = cpu::detect_cpu_isa(), without = with;
  without.onednn = false;
  CpuBackend a(2, "int8", with), b(2, "int8", without);
  EXPECT_NE(a.info().find("oneDNN"), std::string::npos) << a.info();
  EXPECT_EQ(b.info().find("oneDNN"), std::string::npos) << b.info();
  // A byte a weight and 8 a column at the released models' sides (oneDNN
  // pads other sides to its blocks).
  EXPECT_EQ(a.matrix_bytes({1024, 3072}), 1024u * 3072 + 8 * 1024);
  const int64_t M = 37, N = 200, K = 130;
  Tensor xt{{M, K}, random_vector(M * K, 29)}, wt{{N, K}, random_vector(N * K, 30, 0.1f)}, bt{{N}, random_vector(N, 31)};
  std::vector<float> ya(M * N), yb(M * N), ga(M * N), gb(M * N);
  for (CpuBackend* be : {&a, &b}) {
    const Array<float> x = be->upload(xt), bias = be->upload(bt);
    const Array<MatrixElement> w = be->upload_matrix(wt);
    Array<float> y = be->alloc(M * N), g = be->alloc(M * N);
    extents::linear(*be, x.data(), M, K, w.data(), bias.data(), N, y.data());
    extents::linear_gelu(*be, x.data(), M, K, w.data(), bias.data(), N, g.data());
    be->download(y.data(), M * N, be == &a ? ya.data() : yb.data());
    be->download(g.data(), M * N, be == &a ? ga.data() : gb.data());
  }
  for (size_t i = 0; i < ya.size(); ++i) {
    ASSERT_EQ(bits_of(ya[i]), bits_of(yb[i])) << i;
    ASSERT_EQ(bits_of(ga[i]), bits_of(gb[i])) << i;
  }
}

TEST(CpuIsaCap, Avx512TakesAwayAmxAndOnednnCanBeSwitchedOff) {
  cpu::CpuIsa host;
  host.avx2_fma = host.avx512 = host.avx512_bf16 = host.avx512_vnni = host.amx_int8 = host.amx_bf16 = true;
  host.onednn = true;
  EXPECT_EQ(cpu::capped_cpu_isa(host, "amx").name(), "avx512+bf16+vnni+amx");
  const cpu::CpuIsa capped = cpu::capped_cpu_isa(host, "avx512");
  EXPECT_FALSE(capped.amx_int8 || capped.amx_bf16);
  EXPECT_EQ(capped.name(), "avx512+bf16+vnni");
  EXPECT_FALSE(cpu::capped_cpu_isa(host, "avx2").amx_int8);
  EXPECT_FALSE(cpu::OnednnInt8::serves(cpu::capped_cpu_isa(host, "avx2"))) << "oneDNN's int8 needs VNNI or AMX";

  const char* saved = std::getenv("VARPS_CPU_ONEDNN");
  const std::string restore = saved ? saved : "";
  setenv("VARPS_CPU_ONEDNN", "off", 1);
  EXPECT_FALSE(cpu::cpu_isa_from_environment().onednn);
  setenv("VARPS_CPU_ONEDNN", "maybe", 1);
  try {
    cpu::cpu_isa_from_environment();
    ADD_FAILURE() << "VARPS_CPU_ONEDNN=maybe was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("VARPS_CPU_ONEDNN is 'maybe'"), std::string::npos) << e.what();
  }
  if (saved)
    setenv("VARPS_CPU_ONEDNN", restore.c_str(), 1);
  else
    unsetenv("VARPS_CPU_ONEDNN");
}

}  // namespace
}  // namespace varps
