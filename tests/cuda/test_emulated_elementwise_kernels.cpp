// The CUDA backend's element-wise kernels (elementwise_kernels.cuh) run on
// the CPU through kernel_emulator.hpp, launched as cuda_elementwise.cu
// launches them, and are compared with the CPU backend's ops: the
// activations, the sums, the row softmax, the clamp, the gathers and layout
// changes, and the conversions to bf16/fp16. Sizes cross the 256-thread
// blocks and end inside one.
#include <gtest/gtest.h>

#ifdef VARPS_HAVE_CUDA
// First: the device built-ins of the kernel header below.
#include "cuda/kernel_emulator.hpp"
//
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "backend.hpp"
#include "backend_extents.hpp"
#include "cuda/elementwise_kernels.cuh"
#include "cuda/normalised_error.hpp"
#endif

namespace varps::testing {
namespace {

#ifdef VARPS_HAVE_CUDA

using emulator::launch;
namespace ek = cuda::elementwise;

// kernel<<<grid_for(n, kThreads), kThreads>>>(args...), as the backend launches every grid-stride kernel.
template <typename... Params, typename... Args>
void launch_over(void (*kernel)(Params...), size_t n, Args... args) {
  launch(kernel, dim3(cuda::grid_for(n, ek::kThreads)), dim3(ek::kThreads), 0, args...);
}

constexpr size_t kN = 1001;  // four blocks, the last one partly idle

// Random values with the activations' special cases in front.
std::vector<float> activation_inputs() {
  std::vector<float> x = random_vector(kN, 71, 4.0f);
  const float inf = std::numeric_limits<float>::infinity();
  const float special[] = {0.0f, -0.0f, inf, -inf, NAN, 90.0f, -90.0f, 1e-30f, -1e-30f};
  std::copy(std::begin(special), std::end(special), x.begin());
  return x;
}

TEST(EmulatedElementwiseKernels, Activations) {
  auto cpu = make_cpu_backend(1);
  const std::vector<float> x = activation_inputs();
  std::vector<float> ref(kN), got(kN, NAN);
  extents::silu(*cpu, x.data(), kN, ref.data());
  launch_over(ek::silu_kernel, kN, x.data(), kN, got.data());
  EXPECT_CLOSE(got, ref, kVectorMathTol);

  ref = x;
  got = x;
  extents::gelu_tanh_inplace(*cpu, ref.data(), kN);
  launch_over(ek::gelu_tanh_kernel, kN, got.data(), kN);
  EXPECT_CLOSE(got, ref, kVectorMathTol);
}

// The same float operations in the same order as the CPU: bit-identical.
TEST(EmulatedElementwiseKernels, Sums) {
  auto cpu = make_cpu_backend(1);
  const std::vector<float> y0 = random_vector(kN, 72), x = random_vector(kN, 73);
  std::vector<float> ref = y0, got = y0;
  extents::add_inplace(*cpu, ref.data(), x.data(), kN);
  launch_over(ek::add_kernel, kN, got.data(), x.data(), kN);
  EXPECT_EQ(got, ref) << "add";

  ref = y0;
  got = y0;
  extents::axpby_inplace(*cpu, ref.data(), 0.3f, x.data(), -1.7f, kN);
  launch_over(ek::axpby_kernel, kN, got.data(), 0.3f, x.data(), -1.7f, kN);
  EXPECT_EQ(got, ref) << "axpby";

  // Rows of tokens × C channels, each row scaled by its own strided vector.
  const int64_t rows = 3, tokens = 7, C = 45, stride = 4 * C;
  const size_t n = rows * tokens * C;
  const std::vector<float> yr = random_vector(n, 74), xr = random_vector(n, 75), v = random_vector(rows * stride, 76);
  ref = yr;
  got = yr;
  extents::add_scaled_rows(*cpu, ref.data(), xr.data(), v.data() + C, stride, rows, tokens, C);
  launch_over(ek::add_scaled_rows_kernel, n, got.data(), xr.data(), v.data() + C, stride, tokens, C, n);
  EXPECT_EQ(got, ref) << "add_scaled_rows";

  ref = yr;
  got = yr;
  const size_t block = tokens * C;
  extents::add_broadcast_rows(*cpu, ref.data(), v.data(), rows, tokens, C);
  launch_over(ek::add_broadcast_rows_kernel, n, got.data(), v.data(), block, n);
  EXPECT_EQ(got, ref) << "add_broadcast_rows";
}

// One block per row, of softmax_threads(len) threads: rows shorter than a
// warp, a whole warp, between, a whole block and longer than one.
TEST(EmulatedElementwiseKernels, SoftmaxRows) {
  auto cpu = make_cpu_backend(1);
  for (const int64_t len : {int64_t{1}, int64_t{7}, int64_t{32}, int64_t{33}, int64_t{256}, int64_t{700}}) {
    SCOPED_TRACE("len = " + std::to_string(len));
    const int64_t n = 3;
    std::vector<float> ref = random_vector(n * len, 77, 3.0f);
    ref[0] = -std::numeric_limits<float>::infinity();  // a masked entry
    std::vector<float> got = ref;
    extents::softmax_rows(*cpu, ref.data(), n, len);
    launch(ek::softmax_rows_kernel, dim3(static_cast<unsigned>(n)), dim3(ek::softmax_threads(len)), 0, got.data(), len);
    // The max is the CPU's; the exponentials differ as vector math does,
    // and the sum is a block reduction, which associates differently
    // (float32 summation-order error of a length-len sum) and whose
    // rounding every output carries.
    EXPECT_CLOSE(got, ref, fp32_tol(len) + kVectorMathTol);
  }
}

// fminf/fmaxf and the CPU's std::min/std::max agree on every value but NaN
// (the kernel clamps it to lo, the CPU keeps it).
TEST(EmulatedElementwiseKernels, Clamp) {
  auto cpu = make_cpu_backend(1);
  std::vector<float> ref = random_vector(kN, 78, 2.0f);
  ref[0] = std::numeric_limits<float>::infinity();
  ref[1] = -std::numeric_limits<float>::infinity();
  ref[2] = -0.0f;
  std::vector<float> got = ref;
  extents::clamp(*cpu, ref.data(), kN, -1.0f, 1.0f);
  launch_over(ek::clamp_kernel, kN, got.data(), kN, -1.0f, 1.0f);
  EXPECT_EQ(got, ref);
}

std::vector<int32_t> random_indices(size_t n, int32_t V, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> d(0, V - 1);
  std::vector<int32_t> idx(n);
  for (int32_t& i : idx) i = d(rng);
  return idx;
}

TEST(EmulatedElementwiseKernels, GathersAndLayouts) {
  auto cpu = make_cpu_backend(1);
  const int32_t V = 50;
  const int64_t C = 13, N = 2, P = 37;
  const std::vector<float> table = random_vector(V * C, 79);

  const int64_t rows = 41;
  const std::vector<int32_t> idx = random_indices(rows, V, 80);
  std::vector<float> ref(rows * C), got(ref.size(), NAN);
  extents::gather_rows(*cpu, table.data(), C, idx.data(), rows, ref.data());
  launch_over(ek::gather_rows_kernel, got.size(), table.data(), C, idx.data(), got.size(), got.data());
  EXPECT_EQ(got, ref) << "gather_rows";

  const std::vector<int32_t> map = random_indices(N * P, V, 81);
  ref.assign(N * C * P, 0.0f);
  got.assign(ref.size(), NAN);
  extents::embed_chw(*cpu, table.data(), C, map.data(), N, P, ref.data());
  launch_over(ek::embed_chw_kernel, got.size(), table.data(), C, map.data(), P, got.size(), got.data());
  EXPECT_EQ(got, ref) << "embed_chw";

  const std::vector<float> chw = random_vector(N * C * P, 82);
  ref.assign(chw.size(), 0.0f);
  got.assign(chw.size(), NAN);
  extents::chw_to_tokens(*cpu, chw.data(), N, C, P, ref.data());
  launch_over(ek::chw_to_tokens_kernel, got.size(), chw.data(), C, P, got.size(), got.data());
  EXPECT_EQ(got, ref) << "chw_to_tokens";
}

// Round to nearest, ties to even, onto a grid of `mantissa_bits` explicit
// bits whose smallest normal exponent is min_exp, overflowing to infinity
// past max_finite: the rounding of bf16 (7, -126) and fp16 (10, -14),
// computed apart from CUDA's headers as the rounded quotient by the ulp.
float round_to_format(float x, int mantissa_bits, int min_exp, float max_finite) {
  if (!std::isfinite(x) || x == 0.0f) return x;
  const int e = std::max(std::ilogb(x), min_exp);
  const float ulp = std::ldexp(1.0f, e - mantissa_bits);
  const float r = std::nearbyint(x / ulp) * ulp;  // the default mode rounds ties to even
  return std::fabs(r) > max_finite ? std::copysign(std::numeric_limits<float>::infinity(), x) : r;
}

// Values that round up, down and to even at each halfway point, subnormals
// of both formats, overflow and the specials, then random ones.
std::vector<float> cast_inputs(int mantissa_bits) {
  std::vector<float> x;
  const int shift = 23 - mantissa_bits;
  for (const uint32_t base : {0x3f800000u, 0x3f810000u, 0x47000000u, 0x00800000u, 0x33000000u, 0x0001f000u})
    for (const uint32_t frac : {0u, 1u, 1u << (shift - 1), (1u << (shift - 1)) - 1, (1u << (shift - 1)) + 1,
                                (3u << (shift - 1)), (1u << shift) - 1}) {
      uint32_t bits = base + frac;
      float f;
      std::memcpy(&f, &bits, sizeof f);
      x.push_back(f);
      x.push_back(-f);
    }
  const float inf = std::numeric_limits<float>::infinity();
  for (const float f : {0.0f, -0.0f, inf, -inf, 65504.0f, 65519.0f, 65520.0f, 3.3895e38f, FLT_MAX, 1e-8f, 6e-8f})
    x.push_back(f);
  const std::vector<float> r = random_vector(600, 83, 100.0f);
  x.insert(x.end(), r.begin(), r.end());
  return x;
}

template <typename T>
void check_cast(int mantissa_bits, int min_exp, float max_finite) {
  std::vector<float> x = cast_inputs(mantissa_bits);
  x.push_back(NAN);
  std::vector<T> out(x.size());
  launch_over(ek::cast_kernel<T>, x.size(), x.data(), x.size(), out.data());
  int wrong = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const float got = static_cast<float>(out[i]);
    const float want = round_to_format(x[i], mantissa_bits, min_exp, max_finite);
    const bool same = std::isnan(want) ? std::isnan(got) : got == want && std::signbit(got) == std::signbit(want);
    if (!same && wrong++ < 5) ADD_FAILURE() << x[i] << " became " << got << ", not " << want;
  }
  EXPECT_EQ(wrong, 0) << "of " << x.size() << " values";
}

TEST(EmulatedElementwiseKernels, CastToBf16) { check_cast<__nv_bfloat16>(7, -126, 3.3895313892515355e38f); }

TEST(EmulatedElementwiseKernels, CastToFp16) { check_cast<__half>(10, -14, 65504.0f); }

#else
TEST(EmulatedElementwiseKernels, NeedsTheCudaBackend) {
  GTEST_SKIP() << "built without the CUDA backend (VARPS_CUDA=OFF)";
}
#endif

}  // namespace
}  // namespace varps::testing
