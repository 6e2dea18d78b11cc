#include "cpu/panel_gemm.hpp"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <iterator>
#include <memory>

#include "cpu/gemm_kernel.hpp"

namespace varps::cpu {

namespace {

// The k blocks are as deep as they can be while a block of A (2 panels, 12
// rows) and a B panel's block stay in L2 (at most 192 + 256 KiB): a tile
// resumed from C for each block would wait for C's rows from memory first,
// which costs more than streaming B again for every 12 rows of A (measured
// on Zen 4: 210-220 GFLOP/s on 2 cores with whole-k blocks against 190-200
// with 256-deep ones and 96-row A blocks).
constexpr int64_t kBlockK = 4096;
constexpr int64_t kBlockPanelsA = 2;
// Few rows (the small scales of a generation) go in one block when it fits
// this much of L2: each weight is then streamed from memory once, not once
// per 12 rows (10 % faster for 48 rows of depth 1024).
constexpr int64_t kWholeABytes = 256 << 10;
// The B panels a thread sweeps for each block of A are taken this many
// bytes at a time, so that the sweeps after the first read them from L3,
// not memory (d30's 1920 × 7680 product: 155 GFLOP/s without this limit,
// its weights being read from memory once per 12 rows).
constexpr int64_t kBlockBBytes = 6 << 20;


void run_tile(int rows, const float* a, const float* b, int64_t ldb, int64_t kc, float* c, int64_t ldc, bool resume,
              bool last, const TileEpilogue& epi) {
  switch (rows) {
    case 1: multiply_tile<1>(a, b, ldb, kc, c, ldc, resume, last, epi); break;
    case 2: multiply_tile<2>(a, b, ldb, kc, c, ldc, resume, last, epi); break;
    case 3: multiply_tile<3>(a, b, ldb, kc, c, ldc, resume, last, epi); break;
    case 4: multiply_tile<4>(a, b, ldb, kc, c, ldc, resume, last, epi); break;
    case 5: multiply_tile<5>(a, b, ldb, kc, c, ldc, resume, last, epi); break;
    default: multiply_tile<6>(a, b, ldb, kc, c, ldc, resume, last, epi); break;
  }
}

// A tile with fewer than 16 columns of C goes through a full-width copy
// (the extra lanes are computed from B's padding and dropped).
void run_narrow_tile(int rows, int cols, const float* a, const float* b, int64_t ldb, int64_t kc, float* c,
                     int64_t ldc, bool resume, bool last, const ProductOutput& out, int64_t n0) {
  alignas(32) float tile[kTileRows * kTileCols] = {};
  alignas(32) float bias[kTileCols] = {};
  for (int r = 0; r < rows; ++r)
    if (resume) std::memcpy(tile + r * kTileCols, c + r * ldc, static_cast<size_t>(cols) * sizeof(float));
  TileEpilogue epi{nullptr, out.gelu};
  if (out.column_bias) {
    std::memcpy(bias, out.column_bias + n0, static_cast<size_t>(cols) * sizeof(float));
    epi.column_bias = bias;
  }
  run_tile(rows, a, b, ldb, kc, tile, kTileCols, resume, last, epi);
  for (int r = 0; r < rows; ++r) std::memcpy(c + r * ldc, tile + r * kTileCols, static_cast<size_t>(cols) * sizeof(float));
}

// The tiles of A panels [i0, i1) and B panels [j0, j1): for each k block,
// for each block of B panels, for each block of A rows (packed as it is
// reached), every B panel of the block over every A panel of the block.
void multiply_range(const AOperand& a, const BOperand& bo, int64_t M, int64_t N, int64_t K, const ProductOutput& out,
                    bool avx512, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
  const int64_t depth = std::min(K, kBlockK);
  const int64_t a_panels = (i1 - i0) * kTileRows * depth * static_cast<int64_t>(sizeof(float)) <= kWholeABytes
                               ? std::max<int64_t>(i1 - i0, 1)
                               : kBlockPanelsA;
  // With one block of A, the B blocks would only repeat its packing.
  const int64_t b_panels =
      a_panels >= i1 - i0
          ? std::max<int64_t>(j1 - j0, 1)
          : std::max<int64_t>(1, kBlockBBytes / (depth * kTileCols * static_cast<int64_t>(sizeof(float))));
  // The packed block of A: on the stack when small (the attention's
  // products), else on the heap, uninitialised.
  const size_t block_floats = a.packed ? 0 : static_cast<size_t>(a_panels * kTileRows * depth);
  alignas(64) float small_block[kBlockPanelsA * kTileRows * 256];
  std::unique_ptr<float[]> large_block;
  float* block = small_block;
  if (block_floats > std::size(small_block)) {
    large_block.reset(new float[block_floats]);
    block = large_block.get();
  }
  for (int64_t kb = 0; kb < K; kb += kBlockK) {
    const int64_t kc = std::min(kBlockK, K - kb);
    const bool resume = out.accumulate || kb > 0, last = kb + kc == K;
    for (int64_t jb = j0; jb < j1; jb += b_panels) {
      const int64_t je = std::min(j1, jb + b_panels);
      for (int64_t ib = i0; ib < i1; ib += a_panels) {
        const int64_t ie = std::min(i1, ib + a_panels);
        if (!a.packed) {
          const int64_t first_row = ib * kTileRows, rows = std::min(M, ie * kTileRows) - first_row;
          pack_a_panels(a.data + first_row * a.ld + kb, rows, kc, a.ld, block);
        }
        for (int64_t j = jb; j < je;) {
          const float* b = bo.data + j * bo.panel_stride + kb * bo.row_stride;
          const int64_t n0 = j * kTileCols;
          const int cols = static_cast<int>(std::min<int64_t>(kTileCols, N - n0));
          // Two whole panels at once on the AVX-512 tile, the epilogue then
          // applied to each as the AVX2 tile applies it.
          const bool pair = avx512 && j + 1 < je && N - n0 >= 2 * kTileCols;
          for (int64_t i = ib; i < ie; ++i) {
            const float* ap = a.packed ? a.data + (i * K + kb) * kTileRows : block + (i - ib) * kc * kTileRows;
            const int rows = static_cast<int>(std::min<int64_t>(kTileRows, M - i * kTileRows));
            float* c = out.c + i * kTileRows * out.ldc + n0;
            if (pair) {
              fp32_tile_avx512(rows, ap, b, b + bo.panel_stride, bo.row_stride, kc, c, out.ldc, resume);
              if (last)
                for (int half = 0; half < 2; ++half)
                  apply_epilogue(rows, c + half * kTileCols, out.ldc,
                                 TileEpilogue{out.column_bias ? out.column_bias + n0 + half * kTileCols : nullptr,
                                              out.gelu});
            } else if (cols == kTileCols) {
              run_tile(rows, ap, b, bo.row_stride, kc, c, out.ldc, resume, last,
                       TileEpilogue{out.column_bias ? out.column_bias + n0 : nullptr, out.gelu});
            } else {
              run_narrow_tile(rows, cols, ap, b, bo.row_stride, kc, c, out.ldc, resume, last, out, n0);
            }
          }
          j += pair ? 2 : 1;
        }
      }
    }
  }
}

// C = (accumulate ? C : 0) + bias, then GELU: the product of an empty k.
void empty_product(int64_t M, int64_t N, const ProductOutput& out) {
  for (int64_t m = 0; m < M; ++m) {
    float* row = out.c + m * out.ldc;
    for (int64_t n = 0; n < N; ++n) {
      float v = out.accumulate ? row[n] : 0.0f;
      if (out.column_bias) v += out.column_bias[n];
      row[n] = v;
    }
    if (out.gelu) gelu_tanh_span(row, static_cast<size_t>(N));
  }
}

}  // namespace

size_t product_scratch_floats() {
  return std::max<size_t>(kBlockPanelsA * kTileRows * kBlockK, kWholeABytes / sizeof(float));
}

size_t a_panel_floats(int64_t M, int64_t K) {
  return static_cast<size_t>(panels_of(M, kTileRows) * kTileRows * K);
}

size_t b_panel_floats(int64_t N, int64_t K) {
  return static_cast<size_t>(panels_of(N, kTileCols) * kTileCols * K);
}

void pack_a_panels(const float* x, int64_t M, int64_t K, int64_t ldx, float* panels) {
  static const float zeros[kTileRows * 256] = {};
  for (int64_t i = 0; i < panels_of(M, kTileRows); ++i) {
    float* dst = panels + i * K * kTileRows;
    // Rows past M read as zeros, a k chunk at a time (the writes are then
    // one contiguous stream).
    for (int64_t k0 = 0; k0 < K; k0 += 256) {
      const int64_t kn = std::min<int64_t>(256, K - k0);
      const float* src[kTileRows];
      for (int r = 0; r < kTileRows; ++r) {
        const int64_t m = i * kTileRows + r;
        src[r] = m < M ? x + m * ldx + k0 : zeros;
      }
      float* d = dst + k0 * kTileRows;
      for (int64_t k = 0; k < kn; ++k)
        for (int r = 0; r < kTileRows; ++r) d[k * kTileRows + r] = src[r][k];
    }
  }
}

void pack_b_panels_from_rows(const float* w, int64_t N, int64_t K, int64_t ldw, float* panels) {
  const int64_t np = panels_of(N, kTileCols);
#pragma omp parallel for schedule(static) if (N * K > 65536)
  for (int64_t j = 0; j < np; ++j) {
    float* dst = panels + j * K * kTileCols;
    for (int c = 0; c < kTileCols; ++c) {
      const int64_t n = j * kTileCols + c;
      if (n < N) {
        const float* src = w + n * ldw;
        for (int64_t k = 0; k < K; ++k) dst[k * kTileCols + c] = src[k];
      } else {
        for (int64_t k = 0; k < K; ++k) dst[k * kTileCols + c] = 0.0f;
      }
    }
  }
}

void multiply_panels(const AOperand& a, const BOperand& b, int64_t M, int64_t N, int64_t K,
                     const ProductOutput& out, const CpuIsa& isa) {
  if (M <= 0 || N <= 0) return;
  if (K == 0) {
    empty_product(M, N, out);
    return;
  }
  const int64_t mp = panels_of(M, kTileRows), np = panels_of(N, kTileCols);
  const int threads = omp_in_parallel() ? 1 : std::max(1, omp_get_max_threads());
  // Each thread takes whole B panels when there are enough of them (every
  // weight is then read from memory once), else whole A panels.
  const bool split_b = np >= 2 * static_cast<int64_t>(threads) || mp < threads;
  const int64_t work = split_b ? np : mp;
  const int teams = static_cast<int>(std::min<int64_t>(threads, work));
  const bool avx512 = isa.avx512;
  if (teams <= 1) {
    multiply_range(a, b, M, N, K, out, avx512, 0, mp, 0, np);
    return;
  }
#pragma omp parallel num_threads(teams)
  {
    const int64_t t = omp_get_thread_num();
    const int64_t lo = work * t / teams, hi = work * (t + 1) / teams;
    if (split_b)
      multiply_range(a, b, M, N, K, out, avx512, 0, mp, lo, hi);
    else
      multiply_range(a, b, M, N, K, out, avx512, lo, hi, 0, np);
  }
}

}  // namespace varps::cpu
