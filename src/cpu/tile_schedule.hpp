#pragma once
// The order in which the reduced-precision products (bf16_panels.cpp,
// int8_panels.cpp) visit their tiles, with A packed whole beforehand: A
// panels of 6 rows by pairs of B panels of 16 columns (one 6 × 32 register
// tile), the B panels split between the threads when there are enough of
// them (every weight then read from memory once), else the A panels. Within
// a thread, as for float32 panels (panel_gemm.cpp): all of its A panels at
// once when they fit L2, else 12 rows at a time over B in blocks kept in L3.
//
// Which tile a thread computes, and in which order, never changes a tile's
// sums: each output is one chain over k.
#include <omp.h>

#include <algorithm>
#include <cstdint>

#include "cpu/panel_geometry.hpp"

namespace varps::cpu {

struct TileSchedule {
  int64_t a_panels = 0, b_panels = 0;  // panels of 6 rows and of 16 columns
  int64_t a_panel_bytes = 0;           // one packed A panel
  int64_t b_panel_bytes = 0;           // one B panel
};

// Calls tile(i, j, panels) for A panel i and B panels j … j + panels − 1
// (panels 1 or 2) over the whole product. Spreads over the OpenMP threads,
// unless called inside a parallel region.
template <typename Tile>
void run_tile_schedule(const TileSchedule& s, const Tile& tile) {
  constexpr int64_t kWholeABytes = 256 << 10, kBlockPanelsA = 2, kBlockBBytes = 6 << 20;
  auto range = [&](int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
    const int64_t a_block = (i1 - i0) * s.a_panel_bytes <= kWholeABytes ? std::max<int64_t>(i1 - i0, 1) : kBlockPanelsA;
    const int64_t b_block = a_block >= i1 - i0 ? std::max<int64_t>(j1 - j0, 1)
                                               : std::max<int64_t>(2, kBlockBBytes / std::max<int64_t>(s.b_panel_bytes, 1));
    for (int64_t jb = j0; jb < j1; jb += b_block) {
      const int64_t je = std::min(j1, jb + b_block);
      for (int64_t ib = i0; ib < i1; ib += a_block) {
        const int64_t ie = std::min(i1, ib + a_block);
        for (int64_t j = jb; j < je; j += 2)
          for (int64_t i = ib; i < ie; ++i) tile(i, j, j + 1 < je ? 2 : 1);
      }
    }
  };
  const int threads = omp_in_parallel() ? 1 : std::max(1, omp_get_max_threads());
  const int64_t pairs = (s.b_panels + 1) / 2;
  const bool split_b = pairs >= 2 * static_cast<int64_t>(threads) || s.a_panels < threads;
  const int64_t work = split_b ? pairs : s.a_panels;
  const int teams = static_cast<int>(std::min<int64_t>(threads, work));
  if (teams <= 1) {
    range(0, s.a_panels, 0, s.b_panels);
    return;
  }
#pragma omp parallel num_threads(teams)
  {
    const int64_t t = omp_get_thread_num();
    const int64_t lo = work * t / teams, hi = work * (t + 1) / teams;
    if (split_b)
      range(0, s.a_panels, std::min(s.b_panels, 2 * lo), std::min(s.b_panels, 2 * hi));
    else
      range(lo, hi, 0, s.b_panels);
  }
}

}  // namespace varps::cpu
