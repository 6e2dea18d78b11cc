#pragma once
// The int8 x·wᵀ products of cpu/int8_panels.hpp through oneDNN's matmul,
// where the processor has AVX512_VNNI or AMX: oneDNN's kernels for them
// (Intel's tested path to the AMX tiles) beat the panels' VNNI tile on the
// larger row counts. The arithmetic is the panels' own: the same
// quantisation of the weights (per output channel, at upload) and of the
// activations (per row, as the product runs), A's bytes taken unsigned
// (q + 128), exact int32 sums, and the same dequantising epilogue
// (dequantize_row). Integer sums do not depend on their order, so the
// result is the panels' bit for bit, whatever kernel oneDNN picks.
//
// A weight is kept in the layout oneDNN chooses for this processor (the
// same for every row count), followed by its columns' scales and sums of q.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "cpu/cpu_isa.hpp"
#include "cpu/panel_gemm.hpp"
#include "cpu/scratch_pool.hpp"

namespace varps::cpu {

class OnednnInt8 {
 public:
  // Whether the products go through oneDNN on `isa`: the build has it and
  // the processor has AVX512_VNNI or AMX-INT8.
  static bool serves(const CpuIsa& isa);

  // Throws varps::Error where !serves(isa).
  explicit OnednnInt8(const CpuIsa& isa);
  ~OnednnInt8();
  OnednnInt8(const OnednnInt8&) = delete;
  OnednnInt8& operator=(const OnednnInt8&) = delete;

  // "oneDNN 2.6.3 brg:avx512_core_vnni": the version and the kernel it
  // chose for a product of 512×1024 by 1024×1024.
  std::string name() const;

  // Bytes of a weight w[N, K] in this layout.
  size_t weight_bytes(int64_t N, int64_t K) const;
  // w[n·ldw + k] quantised and laid out into `weight` (weight_bytes(N, K)).
  void pack_weight(const float* w, int64_t N, int64_t K, int64_t ldw, void* weight) const;

  // C[M, N] = x·wᵀ (+ bias, then GELU, as `out` says; out.accumulate must
  // be false) from the rows of a (a[m·lda + k]) and a packed weight. Takes
  // int8_product_scratch_floats(M, K) floats from `scratch`. Runs on the
  // OpenMP threads.
  void multiply(const float* a, int64_t lda, const void* weight, int64_t M, int64_t N, int64_t K,
                const ProductOutput& out, ScratchPool& scratch) const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace varps::cpu
