#pragma once
// Matrix products of the CPU backend on panel-packed operands: A as panels
// of 6 rows ([K][6] each), B as panels of 16 columns ([K][16] each), so the
// register tile (gemm_kernel.hpp) reads both contiguously. Weights are
// packed once, when they are uploaded; activations are packed as the
// product runs, a cache-sized block at a time.
//
// Results are bit-identical for a row whatever the row count, the thread
// count and the blocking (see gemm_kernel.hpp).
#include <cstddef>
#include <cstdint>

#include "cpu/cpu_isa.hpp"

namespace varps::cpu {

// Floats of M rows (or columns) of length K packed as A (or B) panels; the
// last panel is zero-padded.
size_t a_panel_floats(int64_t M, int64_t K);
size_t b_panel_floats(int64_t N, int64_t K);

// Rows m < M of x (x[m·ldx + k]) as A panels.
void pack_a_panels(const float* x, int64_t M, int64_t K, int64_t ldx, float* panels);
// The B of x·wᵀ: column n is row n of w (w[n·ldw + k]).
void pack_b_panels_from_rows(const float* w, int64_t N, int64_t K, int64_t ldw, float* panels);

// Where A comes from: rows of a row-major array, packed block by block as
// the product runs, or panels packed beforehand.
struct AOperand {
  const float* data = nullptr;
  int64_t ld = 0;       // row stride of the rows
  bool packed = false;  // data holds a_panel_floats(M, K) floats of panels
};

// What is done with the sum.
struct ProductOutput {
  float* c = nullptr;
  int64_t ldc = 0;
  bool accumulate = false;            // C += A·B (the sum starts from C), else C = A·B
  const float* column_bias = nullptr;  // + bias[n], after the sum
  bool gelu = false;                  // then GELU (tanh form)
};

// The floats a thread of multiply_panels() holds while it runs (its block of
// A rows, packed as they are read).
size_t product_scratch_floats();

// Where B comes from: panels of 16 columns, row k of panel j at
// data + j·panel_stride + k·row_stride.
struct BOperand {
  const float* data = nullptr;
  int64_t panel_stride = 0, row_stride = 0;
  // b_panel_floats(N, K) floats of packed panels.
  static BOperand panels(const float* p, int64_t K) { return {p, K * 16, 16}; }
  // A row-major [K, N] array as it is (b[k·ldb + n]); every 16 columns
  // from the first must be readable, so N is a multiple of 16 or the rows
  // are padded.
  static BOperand rows(const float* b, int64_t ldb) { return {b, 16, ldb}; }
};

// C[M, N] from A[M, K] and B[K, N]. Spreads over the OpenMP threads, unless
// called inside a parallel region. Where `isa` has AVX-512, pairs of B
// panels go through the AVX-512 tile, which gives the AVX2 tile's bits.
void multiply_panels(const AOperand& a, const BOperand& b, int64_t M, int64_t N, int64_t K,
                     const ProductOutput& out, const CpuIsa& isa = CpuIsa{});

// The AVX-512 tile: C[r, 0..32) = start + Σ_k a[k·6 + r] · (b0 | b1)[k·ldb
// + 0..16) for r < rows, start = C when `resume`, else 0. Only where the
// processor has AVX-512.
void fp32_tile_avx512(int rows, const float* a, const float* b0, const float* b1, int64_t ldb, int64_t kc, float* c,
                      int64_t ldc, bool resume);

}  // namespace varps::cpu
