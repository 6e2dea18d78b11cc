// Launches the tensor-core convolution (conv_mma_kernel.cuh) over up to
// 65535 images per launch.
#include <algorithm>
#include <cstdint>

#include "cuda/conv_mma_kernel.cuh"
#include "cuda/cuda_check.hpp"

namespace varps::cuda {

namespace {
constexpr int64_t kMaxGridZ = 65535;
}  // namespace

template <typename T>
void launch_conv_mma(cudaStream_t stream, const float* x, const ConvGeometry& g, const NormOnRead* norm, const T* w,
                     const float* b, bool add_to_out, float* out) {
  if (g.N <= 0 || g.Co <= 0 || g.Ho * g.Wo <= 0) return;
  const bool w_vec = conv_mma::weights_vectorised(g, w);
  const auto* wbits = reinterpret_cast<const uint16_t*>(w);
  const conv_mma::Kernel kernel = conv_mma::kernel_for<T>(norm != nullptr, add_to_out);
  const NormOnRead nr = norm ? *norm : NormOnRead{};
  for (int64_t n0 = 0; n0 < g.N; n0 += kMaxGridZ) {
    const dim3 grid = conv_mma::grid_of(g, std::min<int64_t>(g.N - n0, kMaxGridZ));
    kernel<<<grid, conv_mma::kThreads, 0, stream>>>(x, g, nr, wbits, w_vec, b, n0, out);
    VARPS_CUDA_LAUNCHED("conv_mma_kernel");
  }
}

template void launch_conv_mma<__nv_bfloat16>(cudaStream_t, const float*, const ConvGeometry&, const NormOnRead*,
                                             const __nv_bfloat16*, const float*, bool, float*);
template void launch_conv_mma<__half>(cudaStream_t, const float*, const ConvGeometry&, const NormOnRead*, const __half*,
                                      const float*, bool, float*);

}  // namespace varps::cuda
