// The resampling formulas both backends share (ops/resample.hpp) against
// the CPU backend's whole-plane ops.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "backend.hpp"
#include "backend_extents.hpp"
#include "ops/resample.hpp"

namespace varps::testing {
namespace {

// Every output pixel of every size pair: the CPU backend's planes are the
// per-pixel formulas the CUDA kernels compute (the CPU precomputes the taps
// and loops differently, so this checks the wiring, bit for bit).
TEST(Resample, CpuPlanesAreTheSharedPixelFormulas) {
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
      extents::upsample_bicubic(*cpu, lo_d.data(), 1, h, w, H, W, up.data());
      extents::downsample_area(*cpu, hi_d.data(), 1, H, W, h, w, down.data());
      for (int64_t oy = 0; oy < H; ++oy)
        for (int64_t ox = 0; ox < W; ++ox, ++pixels)
          ASSERT_EQ(ops::bicubic_pixel(lo.ptr(), h, w, H, W, oy, ox), up[oy * W + ox])
              << h << "x" << w << " -> " << H << "x" << W << " at " << oy << "," << ox;
      for (int64_t oy = 0; oy < h; ++oy)
        for (int64_t ox = 0; ox < w; ++ox, ++pixels)
          ASSERT_EQ(ops::area_pixel(hi.ptr(), H, W, h, w, oy, ox), down[oy * w + ox])
              << H << "x" << W << " -> " << h << "x" << w << " at " << oy << "," << ox;
    }
  RecordProperty("pixels", std::to_string(pixels));
}

}  // namespace
}  // namespace varps::testing
