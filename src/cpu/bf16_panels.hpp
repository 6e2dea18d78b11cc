#pragma once
// Matrix products with bf16 operands and float32 sums (--precision bf16 on
// the CPU). Both operands hold two bf16 values of consecutive k in one
// 32-bit word, the even k in the low half: the layout of AVX512_BF16's
// vdpbf16ps, which adds both products of a word pair to a float32 lane.
// B is a weight, rounded once when it is uploaded, as panels of 16 columns
// ([K/2][16] words each); A is the activations, rounded to bf16 (to nearest,
// ties to even) as the product packs them into panels of 6 rows ([K/2][6]).
//
// Each element of C is one chain over the k pairs in order, adding the odd
// k's product and then the even k's (vdpbf16ps's order), whatever the tile,
// the rows beside it or the threads: a row's result does not depend on the
// batch. The AVX512_BF16 tile and the float32 tile used elsewhere compute
// the same chain; they differ only where vdpbf16ps flushes denormals.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "cpu/cpu_isa.hpp"
#include "cpu/panel_gemm.hpp"
#include "cpu/scratch_pool.hpp"

namespace varps::cpu {

// x rounded to bf16, to nearest with ties to even; a NaN stays a NaN.
inline uint16_t round_to_bf16(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

inline float bf16_to_float(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float x;
  std::memcpy(&x, &bits, sizeof x);
  return x;
}

// x[0, K) rounded as word pairs: words[i] holds x[2i] in its low half and
// x[2i + 1] (0 past K) in its high half; (K + 1) / 2 words.
void round_to_bf16_pairs(const float* x, int64_t K, uint32_t* words);
// words[i] = even[i] in the low half, odd[i] in the high half (0 when odd
// is null), for i < n: two rows interleaved.
void round_to_bf16_rows(const float* even, const float* odd, int64_t n, uint32_t* words);

// Words of N columns (or M rows) of depth K packed as B (or A) panels; the
// last panel is zero-padded, and so is an odd K's last pair.
size_t bf16_b_panel_words(int64_t N, int64_t K);
size_t bf16_a_panel_words(int64_t M, int64_t K);

// The B of x·wᵀ: column n is row n of w (w[n·ldw + k]).
void pack_bf16_b_panels_from_rows(const float* w, int64_t N, int64_t K, int64_t ldw, uint32_t* panels);
// Rows m < M of x (x[m·ldx + k]) as A panels of word pairs, for the
// AVX512_BF16 tile.
void pack_bf16_a_panels(const float* x, int64_t M, int64_t K, int64_t ldx, uint32_t* panels);
// The same rows rounded to bf16 but held as floats, as the A panels of
// cpu/panel_gemm.hpp ([K'][6] for K rounded up to even), for the FMA tile.
size_t bf16_a_panel_floats(int64_t M, int64_t K);
void pack_bf16_a_panels_as_floats(const float* x, int64_t M, int64_t K, int64_t ldx, float* panels);

// C[M, N] = A·B (+ bias, then GELU, as `out` says; out.accumulate must be
// false) from the rows of a (a[m·lda + k]) and B's panels. The tile is the
// AVX512_BF16 one where `isa` allows it. A is rounded and packed once, into
// bf16_product_scratch_floats(M, K) floats from `scratch` (or from a pool
// of the call's own). Spreads over the OpenMP threads, unless called inside
// a parallel region.
size_t bf16_product_scratch_floats(int64_t M, int64_t K);
void multiply_bf16_panels(const float* a, int64_t lda, const uint32_t* b_panels, int64_t M, int64_t N, int64_t K,
                          const ProductOutput& out, const CpuIsa& isa, ScratchPool* scratch = nullptr);

// A packed once for many products (a convolution's weight), in the form
// the tile `isa` chooses takes: words for the AVX512_BF16 tile, rounded
// floats for the FMA one.
size_t bf16_a_panel_bytes(const CpuIsa& isa, int64_t M, int64_t K);
void pack_bf16_a_panels_for(const CpuIsa& isa, const float* x, int64_t M, int64_t K, int64_t ldx, void* panels);
// Float32 B panels (cpu/panel_gemm.hpp, [K][16] each) rounded into bf16
// word panels ([K/2][16] each).
void pack_bf16_b_panels_from_float_panels(const float* panels, int64_t N, int64_t K, uint32_t* words);
// C[M, N] (+)= A·B from A packed by pack_bf16_a_panels_for(isa) and B's word
// panels; out.accumulate adds the sums to C. Spreads over the OpenMP
// threads, unless called inside a parallel region.
void multiply_bf16_prepacked(const void* a_panels, const uint32_t* b_panels, int64_t M, int64_t N, int64_t K,
                             const ProductOutput& out, const CpuIsa& isa);

// The register tiles: t[r·32 + c] for r < rows (at most 6) and c < 16·panels
// (panels 1 or 2) from an A panel and the B panels b0 (and b1) over k2 word
// pairs. bf16_tile_avx512 takes the A panel as words and runs vdpbf16ps
// (only where the processor has AVX512_BF16); bf16_tile_fma takes it as
// floats and runs float32 FMAs.
void bf16_tile_avx512(int rows, int panels, const uint32_t* a, const uint32_t* b0, const uint32_t* b1, int64_t k2,
                      float* t);
void bf16_tile_fma(int rows, int panels, const float* a, const uint32_t* b0, const uint32_t* b1, int64_t k2,
                   float* t);

}  // namespace varps::cpu
