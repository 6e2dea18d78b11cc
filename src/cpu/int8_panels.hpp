#pragma once
// Matrix products with int8 operands and int32 sums (--precision int8 on the
// CPU). A weight w[N, K] is quantised once, when it is uploaded: per output
// channel n a scale s_w[n] = max_k |w[n, k]| / 127 and w[n, k] ≈ s_w[n]·q,
// q in [−127, 127], kept as panels of 16 columns whose 32-bit words hold
// four consecutive k of one column ([K/4][16] words per panel), with each
// column's scale and the sum of its q. The activations are quantised a row
// at a time as the product packs them (s_x[m] = max_k |x[m, k]| / 127),
// into panels of 6 rows of such words.
//
// The sums are exact integers, so a row's result depends neither on the
// rows beside it, nor on the threads, nor on the tile: the AVX512_VNNI tile
// (vpdpbusd: unsigned bytes, so x + 128, the column's sum times 128 taken
// off after) and the AVX2 tile (vpmaddubsw on |x| and w with x's sign)
// give the same bits. y[m, n] = float(Σ q_x·q_w) · (s_x[m]·s_w[n]) + b[n].
#include <cstddef>
#include <cstdint>

#include "cpu/cpu_isa.hpp"
#include "cpu/panel_gemm.hpp"
#include "cpu/scratch_pool.hpp"

namespace varps::cpu {

// Bytes of a weight of N columns and depth K as int8 panels, with the
// columns' scales and sums.
size_t int8_b_panel_bytes(int64_t N, int64_t K);
// The B of x·wᵀ: column n is row n of w (w[n·ldw + k]).
void pack_int8_b_panels_from_rows(const float* w, int64_t N, int64_t K, int64_t ldw, void* panels);

// One row of C from its integer sums s[0, cols): c[n] = float(s[n] −
// 128·offset_sums[n]) · (sx·col_scales[n]) (+ bias[n]), then GELU where
// `gelu`. offset_sums: the columns' sums of q where A's bytes were taken
// unsigned (q_x + 128), else null. Every int8 product ends here, so equal
// sums give equal bits.
void dequantize_row(const int32_t* s, int cols, float sx, const float* col_scales, const int32_t* offset_sums,
                    const float* bias, bool gelu, float* c);

// Row m of x quantised: q[k] in [−127, 127] and the scale s with x ≈ s·q.
float quantize_row(const float* x, int64_t K, int8_t* q);
// A weight's row (a column of B) quantised, and the sum of its q: what an
// int8 weight keeps beside its bytes, as products of unsigned activations
// (q + 128) take 128·sum off their sums.
float quantize_weight_row(const float* w, int64_t K, int8_t* q, int32_t* sum);

// C[M, N] = A·B (+ bias, then GELU, as `out` says; out.accumulate must be
// false) from the rows of a (a[m·lda + k]) and a weight's int8 panels. The
// tile is the AVX512_VNNI one where `isa` allows it. A is quantised once,
// into int8_product_scratch_floats(M, K) floats from `scratch` (or from a
// pool of the call's own). Spreads over the OpenMP threads, unless called
// inside a parallel region.
size_t int8_product_scratch_floats(int64_t M, int64_t K);
void multiply_int8_panels(const float* a, int64_t lda, const void* b_panels, int64_t M, int64_t N, int64_t K,
                          const ProductOutput& out, const CpuIsa& isa, ScratchPool* scratch = nullptr);

// The AVX512_VNNI register tile: t[r·32 + c] = Σ over k4 words of row r's
// four bytes, taken as unsigned (x + 128), by column c's four, for r < rows
// (at most 6) and c < 16·panels (panels 1 or 2), from an A panel and the B
// panels b0 (and b1). Only where the processor has AVX512_VNNI.
void int8_tile_vnni(int rows, int panels, const uint32_t* a, const uint32_t* b0, const uint32_t* b1, int64_t k4,
                    int32_t* t);

}  // namespace varps::cpu
