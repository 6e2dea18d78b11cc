// The tensor-core kernels (implicit-GEMM convolution, head_dim-64
// attention) run on the CPU through kernel_emulator.hpp and are compared
// with the CPU backend's ops, in every build with the CUDA backend, GPU or
// not. The reference gets the operands the kernel's products see (rounded
// to bf16/fp16), so a convolution must agree to float32 summation-order
// error and an attention to the rounding of its softmax weights; a wrong
// index, tile bound or fragment layout is off by the size of the values.
#include <gtest/gtest.h>

#ifdef VARPS_HAVE_CUDA
// First: the device built-ins of the kernel headers below.
#include "cuda/kernel_emulator.hpp"
//
#include <cmath>
#include <string>
#include <vector>

#include "backend.hpp"
#include "backend_extents.hpp"
#include "cuda/attention_mma_kernel.cuh"
#include "cuda/attention_problem.hpp"
#include "cuda/conv_mma_kernel.cuh"
#include "cuda/normalised_error.hpp"
#include "cuda/rounded_operands.hpp"
#endif

namespace varps::testing {
namespace {

#ifdef VARPS_HAVE_CUDA

using emulator::launch;

struct ConvCase {
  const char* what;
  int64_t N, Ci, H, W, Co;
  int k, stride, pad_t, pad_l, pad_b, pad_r;
  int groups = 0;  // GroupNorm on read when > 0
  bool silu = false, add = false;
};

template <typename T>
void check_conv(const ConvCase& c) {
  SCOPED_TRACE(c.what);
  auto cpu = make_cpu_backend(1);
  const int64_t Ho = (c.H + c.pad_t + c.pad_b - c.k) / c.stride + 1,
                Wo = (c.W + c.pad_l + c.pad_r - c.k) / c.stride + 1;
  const int64_t HW = c.H * c.W, P = Ho * Wo, Kdim = c.Ci * c.k * c.k;
  const std::vector<float> x = random_vector(c.N * c.Ci * HW, 11), w = random_vector(c.Co * Kdim, 12, 0.2f),
                           b = random_vector(c.Co, 13), before = random_vector(c.N * c.Co * P, 14);
  // The input as the product reads it: normalised first when asked.
  std::vector<float> seen = x, stats, gamma, beta;
  NormOnRead norm;
  if (c.groups > 0) {
    gamma = random_vector(c.Ci, 15, 0.5f);
    beta = random_vector(c.Ci, 16);
    stats.resize(c.N * c.groups * 2);
    extents::group_norm_stats(*cpu, x.data(), c.N, c.Ci, HW, c.groups, 1e-6f, stats.data());
    extents::group_norm(*cpu, x.data(), c.N, c.Ci, HW, c.groups, gamma.data(), beta.data(), 1e-6f, c.silu, seen.data());
    norm = NormOnRead{stats.data(), gamma.data(), beta.data(), c.groups, c.silu};
  }
  std::vector<float> seen_r = rounded<T>(seen), w_r = rounded<T>(w), ref(c.N * c.Co * P);
  extents::conv2d(*cpu, seen_r.data(), c.N, c.Ci, c.H, c.W, w_r.data(), b.data(), c.Co, c.k, c.stride, c.pad_t, c.pad_l, c.pad_b,
              c.pad_r, ref.data());
  if (c.add)
    for (size_t i = 0; i < ref.size(); ++i) ref[i] += before[i];

  const std::vector<T> wt = to_precision<T>(w);
  const auto* wbits = reinterpret_cast<const uint16_t*>(wt.data());
  const cuda::ConvGeometry geo{c.N, c.Ci, c.H, c.W, c.Co, Ho, Wo, c.k, c.stride, c.pad_t, c.pad_l};
  std::vector<float> out = c.add ? before : std::vector<float>(ref.size(), NAN);
  launch(cuda::conv_mma::kernel_for<T>(c.groups > 0, c.add), cuda::conv_mma::grid_of(geo, c.N),
         dim3(cuda::conv_mma::kThreads), 0, x.data(), geo, norm, wbits, cuda::conv_mma::weights_vectorised(geo, wbits),
         b.data(), int64_t{0}, out.data());
  EXPECT_CLOSE(out, ref, fp32_tol(Kdim));
}

// Shapes that cross the kernel's 64-channel × 128-pixel tiles and its
// 32-row steps, rows that are not 16-byte weight loads, strides, one-sided
// and 1×1 padding, GroupNorm + SiLU on read and the residual add.
const ConvCase kConvCases[] = {
    {"3x3, 70 channels, 45 rows (no 16-byte loads)", 2, 5, 9, 13, 70, 3, 1, 1, 1, 1, 1},
    {"3x3, 129 channels, 144 pixels, 144 rows", 1, 16, 12, 12, 129, 3, 1, 1, 1, 1, 1},
    {"3x3 stride 2, one-sided padding", 1, 8, 17, 15, 16, 3, 2, 0, 0, 1, 1},
    {"1x1 with padding", 2, 3, 5, 6, 8, 1, 1, 1, 1, 1, 1},
    {"3x3 with a residual add", 1, 8, 7, 9, 20, 3, 1, 1, 1, 1, 1, 0, false, true},
    {"GroupNorm + SiLU on read, 3x3", 2, 32, 10, 10, 24, 3, 1, 1, 1, 1, 1, 8, true},
    {"GroupNorm on read, 3x3, residual add", 1, 16, 6, 11, 9, 3, 1, 1, 1, 1, 1, 4, false, true},
    {"GroupNorm + SiLU on read, 1x1", 1, 8, 12, 13, 5, 1, 1, 0, 0, 0, 0, 2, true},
};

TEST(EmulatedMmaKernels, TensorCoreConvolutionBf16) {
  for (const ConvCase& c : kConvCases) check_conv<__nv_bfloat16>(c);
}

TEST(EmulatedMmaKernels, TensorCoreConvolutionFp16) {
  for (const ConvCase& c : kConvCases) check_conv<__half>(c);
}

template <typename T>
void check_attention(const AttentionCase& c, double tol) {
  SCOPED_TRACE(c.what);
  // The kernel rounds the queries and the prefix to T as they enter its products.
  const auto p = attention_problem<T>(c, true);
  std::vector<float> out(p.ref.size(), NAN);
  launch(cuda::attention_mma::attention_mma_kernel<T>, cuda::attention_mma::grid_of(c.rows, c.H, c.tokens),
         dim3(cuda::attention_mma::kThreads), 0, p.q.data(), p.k.data(), p.v.data(), c.H, c.tokens, c.capacity, c.len,
         p.scale, p.prefix_k(), p.prefix_v(), c.prefix_tokens, c.rows_per_stream, out.data());
  EXPECT_CLOSE(out, p.ref, tol);
}

// Query counts that leave warps and blocks partly idle, key counts that end
// inside a 64-key tile, and a ParScale prefix shared by a stream's rows.
const AttentionCase kAttentionCases[] = {
    {"16 queries over 16 keys", 1, 2, 16, 64, 16, 16},
    {"17 queries over 70 of 80 cached keys", 2, 3, 17, 64, 80, 70},
    {"70 queries (two blocks) over a prefix and 90 keys", 4, 2, 70, 64, 96, 90, 5, 2},
    {"one full tile of keys after a 64-token prefix", 2, 1, 33, 64, 64, 64, 64, 1},
};

TEST(EmulatedMmaKernels, TensorCoreAttentionBf16) {
  for (const AttentionCase& c : kAttentionCases) check_attention<__nv_bfloat16>(c, kBf16Tol);
}

TEST(EmulatedMmaKernels, TensorCoreAttentionFp16) {
  for (const AttentionCase& c : kAttentionCases) check_attention<__half>(c, kFp16Tol);
}

#else
TEST(EmulatedMmaKernels, NeedsTheCudaBackend) { GTEST_SKIP() << "built without the CUDA backend (VARPS_CUDA=OFF)"; }
#endif

}  // namespace
}  // namespace varps::testing
