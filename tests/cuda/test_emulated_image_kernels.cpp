// The CUDA backend's image kernels (image_kernels.cuh) run on the CPU
// through kernel_emulator.hpp, launched as cuda_image.cu launches them, and
// are compared with the CPU backend's ops: the float32 convolution (bias
// planes and im2col bands, plain and normalised on read, with the CPU's
// gemm standing in for cuBLASLt), GroupNorm at its real block size, nearest
// upsampling, bicubic and area resampling, the codebook search, and one
// scale of the residual path with its Phi convolution.
#include <gtest/gtest.h>

#ifdef VARPS_HAVE_CUDA
// First: the device built-ins of the kernel headers below.
#include "cuda/kernel_emulator.hpp"
//
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "backend.hpp"
#include "backend_extents.hpp"
#include "cuda/cuda_backend.hpp"
#include "cuda/image_kernels.cuh"
// The residual path takes a few of these kernels, not all of them.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "cuda/elementwise_kernels.cuh"
#pragma GCC diagnostic pop
#include "cuda/normalised_error.hpp"
#endif

namespace varps::testing {
namespace {

#ifdef VARPS_HAVE_CUDA

using emulator::launch;
namespace ik = cuda::image;

struct Conv {
  int64_t N, Ci, H, W, Co;
  int k, stride, pad_t, pad_l, pad_b, pad_r;
  int64_t Ho() const { return (H + pad_t + pad_b - k) / stride + 1; }
  int64_t Wo() const { return (W + pad_l + pad_r - k) / stride + 1; }
  int64_t Kdim() const { return Ci * k * k; }
};

// CudaBackend::convolve's float32 path as the backend runs it: the bias
// planes, then per band of output rows the im2col kernel and the product
// into out, which cuBLASLt computes on a device and the CPU backend's gemm
// here. `band_elements` stands in for the backend's 64 MB band, so that
// small maps cross bands too.
template <typename I>
void emulated_convolution(Backend& cpu, const float* x, const Conv& c, const NormOnRead* norm, const float* w,
                          const float* b, bool add_to_out, float* out, int64_t band_elements) {
  const int64_t Ho = c.Ho(), Wo = c.Wo(), P = Ho * Wo, Kdim = c.Kdim();
  if (b || (Kdim == 0 && !add_to_out)) {
    const int64_t planes = c.N * c.Co;
    if (add_to_out)
      launch(ik::fill_planes_kernel<true, I>, ik::plane_grid(P, planes), dim3(ik::kThreads), 0, out, planes, c.Co,
             static_cast<I>(P), b);
    else
      launch(ik::fill_planes_kernel<false, I>, ik::plane_grid(P, planes), dim3(ik::kThreads), 0, out, planes, c.Co,
             static_cast<I>(P), b);
  }
  const float beta = b || add_to_out ? 1.0f : 0.0f;
  const int64_t band_rows = ik::im2col_band_rows(Kdim, Ho, Wo, band_elements);
  std::vector<float> col(static_cast<size_t>(Kdim * band_rows * Wo), NAN);
  for (int64_t n = 0; n < c.N; ++n) {
    const float* xn = x + n * c.Ci * c.H * c.W;
    for (int64_t oy0 = 0; oy0 < Ho; oy0 += band_rows) {
      const int64_t cols = std::min(band_rows, Ho - oy0) * Wo;
      const dim3 grid = ik::im2col_grid(cols, Kdim);
      if (norm)
        launch(ik::im2col_band_kernel<true, I, float>, grid, dim3(ik::kThreads), 0, xn, c.Ci, c.H, c.W, c.k, c.stride,
               c.pad_t, c.pad_l, static_cast<I>(Wo), oy0, Kdim, static_cast<I>(cols), *norm, n, col.data());
      else
        launch(ik::im2col_band_kernel<false, I, float>, grid, dim3(ik::kThreads), 0, xn, c.Ci, c.H, c.W, c.k, c.stride,
               c.pad_t, c.pad_l, static_cast<I>(Wo), oy0, Kdim, static_cast<I>(cols), NormOnRead{}, n, col.data());
      extents::gemm(cpu, false, false, c.Co, cols, Kdim, 1.0f, w, Kdim, col.data(), cols, beta, out + (n * c.Co) * P + oy0 * Wo,
               P);
    }
  }
}

struct ConvCase {
  const char* what;
  Conv c;
  int band_rows;  // output rows per band, as the band size gives them
  bool bias = true;
  int groups = 0;  // GroupNorm on read when > 0
  bool silu = false, add = false;
};

// Bands that split the output rows unevenly, strides, one-sided and 1×1
// padding, no bias, GroupNorm (+ SiLU) on read, and the residual add.
const ConvCase kConvCases[] = {
    {"3x3, three bands", {2, 3, 9, 11, 5, 3, 1, 1, 1, 1, 1}, 4},
    {"3x3 stride 2, one-sided padding, no bias", {1, 4, 10, 7, 6, 3, 2, 0, 0, 1, 1}, 2, false},
    {"1x1 with padding", {1, 5, 4, 6, 3, 1, 1, 1, 1, 1, 1}, 6},
    {"GroupNorm + SiLU on read, residual add", {2, 4, 6, 7, 4, 3, 1, 1, 1, 1, 1}, 4, true, 2, true, true},
    {"GroupNorm on read, 1x1, no bias", {1, 6, 5, 5, 7, 1, 1, 0, 0, 0, 0}, 2, false, 2},
};

template <typename I>
void check_convolution(const ConvCase& cc) {
  SCOPED_TRACE(cc.what);
  auto cpu = make_cpu_backend(1);
  const Conv& c = cc.c;
  const int64_t P = c.Ho() * c.Wo();
  const std::vector<float> x = random_vector(c.N * c.Ci * c.H * c.W, 91), w = random_vector(c.Co * c.Kdim(), 92, 0.3f),
                           b = random_vector(c.Co, 93), before = random_vector(c.N * c.Co * P, 94);
  std::vector<float> stats, gamma = random_vector(c.Ci, 95, 0.5f), beta = random_vector(c.Ci, 96);
  NormOnRead norm;
  if (cc.groups > 0) {
    stats.resize(c.N * cc.groups * 2);
    extents::group_norm_stats(*cpu, x.data(), c.N, c.Ci, c.H * c.W, cc.groups, 1e-6f, stats.data());
    norm = NormOnRead{stats.data(), gamma.data(), beta.data(), cc.groups, cc.silu};
  }
  std::vector<float> ref = cc.add ? before : std::vector<float>(before.size(), NAN);
  const float* bias = cc.bias ? b.data() : nullptr;
  if (cc.groups > 0)
    extents::normalized_conv2d(*cpu, x.data(), c.N, c.Ci, c.H, c.W, norm, w.data(), bias, c.Co, c.k, cc.add, ref.data());
  else
    extents::conv2d(*cpu, x.data(), c.N, c.Ci, c.H, c.W, w.data(), bias, c.Co, c.k, c.stride, c.pad_t, c.pad_l, c.pad_b, c.pad_r,
                ref.data());

  std::vector<float> out = cc.add ? before : std::vector<float>(before.size(), NAN);
  emulated_convolution<I>(*cpu, x.data(), c, cc.groups > 0 ? &norm : nullptr, w.data(), bias, cc.add, out.data(),
                          c.Kdim() * cc.band_rows * c.Wo());
  // Both sides sum Kdim float32 products, in different orders (the CPU
  // backend's product and the one standing in for cuBLASLt); normalised on
  // read with SiLU, the columns carry the vector-math difference too.
  EXPECT_CLOSE(out, ref, fp32_tol(c.Kdim()) + (cc.silu ? kVectorMathTol : 0.0));
}

TEST(EmulatedImageKernels, Float32Convolution) {
  for (const ConvCase& cc : kConvCases) check_convolution<uint32_t>(cc);
}

// The instances the backend takes for maps of 2^31 elements or more.
TEST(EmulatedImageKernels, Float32ConvolutionWideIndices) {
  check_convolution<uint64_t>(kConvCases[0]);
  check_convolution<uint64_t>(kConvCases[3]);
}

struct NormCase {
  const char* what;
  int64_t N, C, HW;
  int groups;
  bool silu, in_place;
};

// At the kernels' real block of kNormThreads: groups long enough for the
// four-load loop (4·1024 elements, or float4s), one of fewer elements than
// threads, HW odd (no float4), in place.
const NormCase kNormCases[] = {
    {"float4, SiLU", 2, 8, 64 * 72, 2, true, false},
    {"odd HW, in place", 1, 6, 37 * 41, 2, false, true},
    {"8 elements per group, in place, SiLU", 1, 3, 8, 3, true, true},
};

template <typename I>
void check_group_norm(const NormCase& nc) {
  SCOPED_TRACE(nc.what);
  auto cpu = make_cpu_backend(1);
  std::vector<float> x = random_vector(nc.N * nc.C * nc.HW, 101, 2.0f);
  for (float& v : x) v += 3.0f;  // a mean far from 0, as the two passes are for
  const std::vector<float> gamma = random_vector(nc.C, 102), beta = random_vector(nc.C, 103);
  const float eps = 1e-6f;
  const dim3 grid(ik::group_blocks(nc.N, nc.groups)), block(ik::kNormThreads);

  std::vector<float> stats_ref(nc.N * nc.groups * 2), stats(stats_ref.size(), NAN);
  extents::group_norm_stats(*cpu, x.data(), nc.N, nc.C, nc.HW, nc.groups, eps, stats_ref.data());
  const bool vec_in = ik::group_float4(nc.HW, x.data());
  launch(vec_in ? ik::group_stats_kernel<true, I> : ik::group_stats_kernel<false, I>, grid, block, 0, x.data(), nc.C,
         nc.HW, nc.groups, eps, stats.data());
  // Mean and variance are double sums associated differently (the block's
  // threads, then its tree), relative error ~1e-16, each rounded to float
  // once: at most an ulp apart.
  EXPECT_CLOSE(stats, stats_ref, FLT_EPSILON);

  std::vector<float> ref(x.size()), separate(x.size(), NAN);
  extents::group_norm(*cpu, x.data(), nc.N, nc.C, nc.HW, nc.groups, gamma.data(), beta.data(), eps, nc.silu, ref.data());
  std::vector<float> in_place = x;
  const float* in = nc.in_place ? in_place.data() : x.data();
  float* out = nc.in_place ? in_place.data() : separate.data();
  const bool vec = ik::group_float4(nc.HW, in) && ik::group_float4(nc.HW, out);
  EXPECT_EQ(vec, nc.HW % 4 == 0) << "a vector's storage is 16-byte aligned";
  launch(vec ? ik::group_norm_kernel<true, I> : ik::group_norm_kernel<false, I>, grid, block, 0, in, nc.C, nc.HW,
         nc.groups, gamma.data(), beta.data(), eps, nc.silu, out);
  // An ulp of the mean or rstd moves an output by about an ulp of its size;
  // SiLU adds the vector-math difference.
  EXPECT_CLOSE(nc.in_place ? in_place : separate, ref, 2 * FLT_EPSILON + (nc.silu ? kVectorMathTol : 0.0));
}

TEST(EmulatedImageKernels, GroupNorm) {
  for (const NormCase& nc : kNormCases) check_group_norm<uint32_t>(nc);
}

TEST(EmulatedImageKernels, GroupNormWideIndices) { check_group_norm<uint64_t>(kNormCases[0]); }

template <typename I>
void check_upsample_nearest2x() {
  auto cpu = make_cpu_backend(1);
  const int64_t NC = 3, H = 5, W = 7, total = NC * H * W;
  const std::vector<float> x = random_vector(total, 111);
  std::vector<float> ref(4 * total), got(ref.size(), NAN);
  extents::upsample_nearest2x(*cpu, x.data(), NC, H, W, ref.data());
  launch(ik::upsample_nearest2x_kernel<I>, dim3(cuda::grid_for(total, ik::kThreads)), dim3(ik::kThreads), 0, x.data(),
         static_cast<I>(total), static_cast<I>(W), got.data());
  EXPECT_EQ(got, ref);
}

TEST(EmulatedImageKernels, UpsampleNearest2x) {
  check_upsample_nearest2x<uint32_t>();
  check_upsample_nearest2x<uint64_t>();
}

// launch_resample of cuda_image.cu.
template <ik::Resample kMode, typename I = uint32_t>
void emulated_resample(const float* x, int64_t NC, int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w,
                       float* out) {
  const int64_t total = NC * out_h * out_w;
  launch(ik::resample_kernel<kMode, I>, dim3(cuda::grid_for(total, ik::kThreads)), dim3(ik::kThreads), 0, x,
         static_cast<I>(total), in_h, in_w, static_cast<I>(out_h), static_cast<I>(out_w), out);
}

struct Sizes {
  int64_t from, to;
};

// The residual path's sizes (a patch side to the latent side and back),
// with one side growing or shrinking by a non-integer factor. Every float
// operation rounds as the CPU's: bit-identical.
TEST(EmulatedImageKernels, BicubicAndArea) {
  auto cpu = make_cpu_backend(1);
  const int64_t NC = 2;
  for (const Sizes s : {Sizes{1, 4}, Sizes{2, 16}, Sizes{3, 16}, Sizes{5, 16}, Sizes{16, 16}, Sizes{7, 13}}) {
    SCOPED_TRACE("bicubic " + std::to_string(s.from) + " -> " + std::to_string(s.to));
    const std::vector<float> x = random_vector(NC * s.from * (s.from + 1), 112);
    std::vector<float> ref(NC * s.to * (s.to + 2)), got(ref.size(), NAN);
    extents::upsample_bicubic(*cpu, x.data(), NC, s.from, s.from + 1, s.to, s.to + 2, ref.data());
    emulated_resample<ik::Resample::Bicubic>(x.data(), NC, s.from, s.from + 1, s.to, s.to + 2, got.data());
    EXPECT_EQ(got, ref);
  }
  for (const Sizes s : {Sizes{16, 1}, Sizes{16, 3}, Sizes{16, 5}, Sizes{16, 16}, Sizes{13, 7}, Sizes{5, 2}}) {
    SCOPED_TRACE("area " + std::to_string(s.from) + " -> " + std::to_string(s.to));
    const std::vector<float> x = random_vector(NC * s.from * (s.from + 3), 113);
    std::vector<float> ref(NC * s.to * (s.to + 1)), got(ref.size(), NAN);
    extents::downsample_area(*cpu, x.data(), NC, s.from, s.from + 3, s.to, s.to + 1, ref.data());
    emulated_resample<ik::Resample::Area>(x.data(), NC, s.from, s.from + 3, s.to, s.to + 1, got.data());
    EXPECT_EQ(got, ref);
  }
  const std::vector<float> x = random_vector(NC * 5 * 5, 114);
  std::vector<float> ref(NC * 16 * 16), got(ref.size(), NAN);
  extents::upsample_bicubic(*cpu, x.data(), NC, 5, 5, 16, 16, ref.data());
  emulated_resample<ik::Resample::Bicubic, uint64_t>(x.data(), NC, 5, 5, 16, 16, got.data());
  EXPECT_EQ(got, ref) << "wide indices";
}

// CudaBackend::nearest_code: the squared norms, then per chunk of rows the
// distances' dot products (cuBLASLt on a device; here the CPU backend's
// gemm over all rows, of which each chunk reads its own) and the search.
std::vector<int32_t> emulated_nearest_code(Backend& cpu, const std::vector<float>& z, int64_t n,
                                           const std::vector<float>& codebook, int64_t V, int64_t C,
                                           int64_t scratch_elements) {
  std::vector<float> e2(V, NAN), dots(n * V, NAN);
  launch(ik::squared_norms_kernel, dim3(cuda::grid_for(V, ik::kThreads)), dim3(ik::kThreads), 0, codebook.data(), V, C,
         e2.data());
  if (C > 0) extents::gemm(cpu, false, true, n, V, C, 1.0f, z.data(), C, codebook.data(), C, 0.0f, dots.data(), V);
  std::vector<int32_t> idx(n, -1);
  const int64_t chunk = ik::nearest_code_rows(n, V, scratch_elements);
  for (int64_t r0 = 0; r0 < n; r0 += chunk) {
    const int64_t rows = std::min(chunk, n - r0);
    launch(ik::nearest_code_kernel, dim3(ik::nearest_code_blocks(rows)), dim3(ik::kThreads), 0, z.data() + r0 * C, rows,
           C, C > 0 ? dots.data() + r0 * V : nullptr, e2.data(), V, idx.data() + r0);
  }
  return idx;
}

// More codes than a block has threads, chunks of 7 rows, and a row whose
// every distance is infinite or NaN (the CPU's answer is then 0).
TEST(EmulatedImageKernels, NearestCode) {
  auto cpu = make_cpu_backend(1);
  const int64_t n = 20, V = 300, C = 8;
  std::vector<float> z = random_vector(n * C, 121);
  const std::vector<float> codebook = random_vector(V * C, 122);
  z[5 * C] = std::numeric_limits<float>::infinity();
  std::vector<int32_t> ref(n, -1);
  extents::nearest_code(*cpu, z.data(), n, codebook.data(), V, C, ref.data());
  EXPECT_EQ(emulated_nearest_code(*cpu, z, n, codebook, V, C, 7 * V), ref);
}

// Small integers make every distance exact, whatever the order of the
// products' sums, so the many equal ones (codes drawn from a few distinct
// rows) are equal on both sides: the first index of the smallest must win
// across threads, warps and the block.
TEST(EmulatedImageKernels, NearestCodeTakesTheFirstOfEqualDistances) {
  auto cpu = make_cpu_backend(1);
  const int64_t n = 9, V = 600, C = 4, distinct = 6;
  std::mt19937 rng(123);
  std::uniform_int_distribution<int> small(-2, 2);
  std::vector<float> rows(distinct * C), codebook(V * C), z(n * C);
  for (float& v : rows) v = static_cast<float>(small(rng));
  for (int64_t v = 0; v < V; ++v)
    for (int64_t c = 0; c < C; ++c) codebook[v * C + c] = rows[(v * 7 + v / 50) % distinct * C + c];
  for (float& v : z) v = static_cast<float>(small(rng));
  std::vector<int32_t> ref(n, -1);
  extents::nearest_code(*cpu, z.data(), n, codebook.data(), V, C, ref.data());
  EXPECT_EQ(emulated_nearest_code(*cpu, z, n, codebook, V, C, n * V), ref);
  // Without channels every distance is 0: the first code.
  EXPECT_EQ(emulated_nearest_code(*cpu, z, n, codebook, V, 0, n * V), std::vector<int32_t>(n, 0));
}

// One scale of the residual path as Vqvae::add_scale runs it, in float32:
// the scale's codes embedded, upsampled (bicubic) to the latent side, Phi (a
// 3×3 convolution mixed back as h·(1 − r) + Phi(h)·r), added into f_hat;
// then the next scale's input, f_hat pooled (area) and laid out as tokens.
TEST(EmulatedImageKernels, ResidualPathScaleWithPhi) {
  namespace ek = cuda::elementwise;
  auto cpu = make_cpu_backend(1);
  const int64_t n = 2, C = 4, V = 30, S = 8, pn = 3, next_pn = 5, S2 = S * S;
  const float r = 0.5f;
  const std::vector<float> codebook = random_vector(V * C, 131), w = random_vector(C * C * 9, 132, 0.3f),
                           b = random_vector(C, 133), f_hat0 = random_vector(n * C * S2, 134);
  std::vector<int32_t> idx(n * pn * pn);
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<int32_t>((i * 11) % V);
  const Conv phi{n, C, S, S, C, 3, 1, 1, 1, 1, 1};

  struct Maps {
    std::vector<float> h, up, conv, f_hat, down, tokens;
  };
  auto maps = [&] {
    return Maps{std::vector<float>(n * C * pn * pn, NAN),
                std::vector<float>(n * C * S2, NAN),
                std::vector<float>(n * C * S2, NAN),
                f_hat0,
                std::vector<float>(n * C * next_pn * next_pn, NAN),
                std::vector<float>(n * C * next_pn * next_pn, NAN)};
  };
  Maps ref = maps(), got = maps();

  extents::embed_chw(*cpu, codebook.data(), C, idx.data(), n, pn * pn, ref.h.data());
  extents::upsample_bicubic(*cpu, ref.h.data(), n * C, pn, pn, S, S, ref.up.data());
  extents::conv2d(*cpu, ref.up.data(), n, C, S, S, w.data(), b.data(), C, 3, 1, 1, 1, 1, 1, ref.conv.data());
  extents::axpby_inplace(*cpu, ref.up.data(), 1.0f - r, ref.conv.data(), r, ref.up.size());
  extents::add_inplace(*cpu, ref.f_hat.data(), ref.up.data(), ref.f_hat.size());
  extents::downsample_area(*cpu, ref.f_hat.data(), n * C, S, S, next_pn, next_pn, ref.down.data());
  extents::chw_to_tokens(*cpu, ref.down.data(), n, C, next_pn * next_pn, ref.tokens.data());

  auto grid = [](size_t elements) { return dim3(cuda::grid_for(elements, ek::kThreads)); };
  const dim3 block(ek::kThreads);
  launch(ek::embed_chw_kernel, grid(got.h.size()), block, 0, codebook.data(), C, idx.data(), pn * pn, got.h.size(),
         got.h.data());
  emulated_resample<ik::Resample::Bicubic>(got.h.data(), n * C, pn, pn, S, S, got.up.data());
  emulated_convolution<uint32_t>(*cpu, got.up.data(), phi, nullptr, w.data(), b.data(), false, got.conv.data(),
                                 cuda::CudaBackend::kBandElements);
  launch(ek::axpby_kernel, grid(got.up.size()), block, 0, got.up.data(), 1.0f - r, got.conv.data(), r, got.up.size());
  launch(ek::add_kernel, grid(got.f_hat.size()), block, 0, got.f_hat.data(), got.up.data(), got.f_hat.size());
  emulated_resample<ik::Resample::Area>(got.f_hat.data(), n * C, S, S, next_pn, next_pn, got.down.data());
  launch(ek::chw_to_tokens_kernel, grid(got.tokens.size()), block, 0, got.down.data(), C, next_pn * next_pn,
         got.tokens.size(), got.tokens.data());

  // Only the convolution's sums differ in order (9·C products); the rest
  // rounds as the CPU, so the error stays within the product's.
  EXPECT_CLOSE(got.conv, ref.conv, fp32_tol(phi.Kdim()));
  EXPECT_CLOSE(got.f_hat, ref.f_hat, fp32_tol(phi.Kdim()));
  EXPECT_CLOSE(got.tokens, ref.tokens, fp32_tol(phi.Kdim()));
}

#else
TEST(EmulatedImageKernels, NeedsTheCudaBackend) { GTEST_SKIP() << "built without the CUDA backend (VARPS_CUDA=OFF)"; }
#endif

}  // namespace
}  // namespace varps::testing
