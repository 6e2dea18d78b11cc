// The CUDA kernels' per-element arithmetic that is callable from the host,
// checked without a GPU (in builds with the CUDA backend): the sampler's
// sort keys order floats as `<` does.
#include <gtest/gtest.h>

#ifdef VARPS_HAVE_CUDA
#include <cuda_runtime.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "backend.hpp"
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

#else

TEST(CudaHostMath, NeedsTheCudaBuild) { GTEST_SKIP() << "built without the CUDA backend (VARPS_CUDA=OFF)"; }

#endif

}  // namespace
}  // namespace varps::testing
