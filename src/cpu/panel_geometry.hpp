#pragma once
// The shape every CPU product packs its operands in, whatever the element
// type (float32, bf16 pairs, int8 quads): A in panels of 6 rows, B in
// panels of 16 columns, so that one register tile is 6 × 16 (or 6 × 32 over
// two B panels) and the tile schedule (tile_schedule.hpp) is the same for all.
#include <cstdint>

namespace varps::cpu {

inline constexpr int kTileRows = 6;   // rows of an A panel
inline constexpr int kTileCols = 16;  // columns of a B panel

// Panels of `width` that hold n rows or columns (the last one padded).
inline int64_t panels_of(int64_t n, int64_t width) { return (n + width - 1) / width; }

}  // namespace varps::cpu
