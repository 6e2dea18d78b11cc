#pragma once
// 3×3 stride-1 convolutions of the CPU backend as Winograd F(4×4, 3×3)
// (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016):
// each 4×4 block of output pixels is Aᵀ[(G·g·Gᵀ) ⊙ (Bᵀ·d·B)]A over the 6×6
// input patch d, so the channel sums are 36 products per block instead of
// 144, and run as 36 matrix products (one per frequency ξ) over the
// blocks. The floating-point error is a few times that of the direct sum
// (docs/tolerances.md); the transforms of the weights are computed in
// double.
#include <cstddef>
#include <cstdint>

#include "backend.hpp"
#include "cpu/cpu_isa.hpp"
#include "cpu/scratch_pool.hpp"

namespace varps::cpu {

// Whether winograd_convolve() takes this convolution: 3×3, stride 1, zero
// padding 1 on every side, a map of at least 32×32, and transformed
// weights of at most 16 MiB (wider layers run faster as one product).
bool winograd_takes(int64_t Ci, int64_t Co, int64_t H, int64_t W, int k, int stride, int pad_t, int pad_l, int pad_b,
                    int pad_r);

// Whether winograd_takes() can take a convolution of this weight on some
// map: 3×3, and transformed weights of at most 16 MiB.
bool winograd_takes_weight(int64_t Ci, int64_t Co, int k);

// Floats winograd_convolve() holds while it runs, with `threads` threads.
size_t winograd_workspace_floats(int64_t Ci, int64_t Co, int64_t W, int threads);

// out[n] = (add_to_out ? out[n] : 0) + b + conv(norm(x[n]), w): w as A
// panels of [Co, Ci·9] (cpu/panel_gemm.hpp), norm applied as the input is
// read when given (zero padding after it). The sum is (out + b) + conv.
// Its buffers come from `scratch`; its products use what `isa` allows.
void winograd_convolve(const float* x, int64_t N, int64_t Ci, int64_t H, int64_t W, const NormOnRead* norm,
                       const float* w_panels, const float* b, int64_t Co, bool add_to_out, float* out,
                       ScratchPool& scratch, const CpuIsa& isa = CpuIsa{});

}  // namespace varps::cpu
