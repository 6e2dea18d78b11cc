// The CUDA kernels' per-element arithmetic that is callable from the host,
// checked against the CPU reference without a GPU (in builds with the CUDA
// backend): the sampler's sort keys order floats as `<` does, and the
// bicubic and area resampling pixels are bit-identical to the CPU backend's.
#include <gtest/gtest.h>

#ifdef VARPS_HAVE_CUDA
#include <cuda_runtime.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "backend.hpp"
#include "cuda/resample_math.cuh"
#include "cuda/sampling_math.cuh"
#endif

namespace varps::testing {
namespace {

#ifdef VARPS_HAVE_CUDA

TEST(CudaHostMath, SortKeysOrderFloatsAsLessThan) {
  constexpr float inf = std::numeric_limits<float>::infinity();
  std::vector<float> v = {-inf, inf, 0.0f, -0.0f, std::numeric_limits<float>::denorm_min(),
                          -std::numeric_limits<float>::denorm_min(), std::numeric_limits<float>::min(),
                          -std::numeric_limits<float>::min(), std::numeric_limits<float>::max(),
                          -std::numeric_limits<float>::max(), 1.0f, -1.0f};
  std::mt19937 rng(5);
  std::uniform_int_distribution<uint32_t> bits;
  while (v.size() < 600) {
    const float f = cuda::bits_float(bits(rng));
    if (!std::isnan(f)) v.push_back(f);
  }
  for (float a : v) {
    EXPECT_EQ(cuda::order_key_float(cuda::float_order_key(a)), a == 0.0f ? 0.0f : a);
    for (float b : v) {
      ASSERT_EQ(cuda::float_order_key(a) < cuda::float_order_key(b), a < b) << a << " vs " << b;
      ASSERT_EQ(cuda::float_order_key(a) == cuda::float_order_key(b), a == b) << a << " vs " << b;
    }
  }
}

// Every output pixel of every size pair, against the CPU backend's planes.
TEST(CudaHostMath, ResamplingPixelsMatchTheCpuBitForBit) {
  auto cpu = make_cpu_backend(1);
  std::mt19937 rng(6);
  std::normal_distribution<float> d;
  int64_t pixels = 0;
  for (int64_t small = 1; small <= 24; ++small)
    for (int64_t big : {small, small + 1, 2 * small + 3, int64_t{16}, int64_t{32}, int64_t{37}}) {
      if (big < small) continue;
      const int64_t h = small, w = small + 2, H = big, W = big + 3;
      Tensor lo({h * w}), hi({H * W});
      for (float& x : lo.data) x = d(rng);
      for (float& x : hi.data) x = d(rng);
      auto lo_d = cpu->upload(lo), hi_d = cpu->upload(hi);
      std::vector<float> up(H * W), down(h * w);
      cpu->upsample_bicubic(lo_d.data(), 1, h, w, H, W, up.data());
      cpu->downsample_area(hi_d.data(), 1, H, W, h, w, down.data());
      for (int64_t oy = 0; oy < H; ++oy)
        for (int64_t ox = 0; ox < W; ++ox, ++pixels)
          ASSERT_EQ(cuda::resample::bicubic_pixel(lo.ptr(), h, w, H, W, oy, ox), up[oy * W + ox])
              << h << "x" << w << " -> " << H << "x" << W << " at " << oy << "," << ox;
      for (int64_t oy = 0; oy < h; ++oy)
        for (int64_t ox = 0; ox < w; ++ox, ++pixels)
          ASSERT_EQ(cuda::resample::area_pixel(hi.ptr(), H, W, h, w, oy, ox), down[oy * w + ox])
              << H << "x" << W << " -> " << h << "x" << w << " at " << oy << "," << ox;
    }
  RecordProperty("pixels", std::to_string(pixels));
}

#else

TEST(CudaHostMath, NeedsTheCudaBuild) { GTEST_SKIP() << "built without the CUDA backend (VARPS_CUDA=OFF)"; }

#endif

}  // namespace
}  // namespace varps::testing
