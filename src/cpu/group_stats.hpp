#pragma once
// GroupNorm's statistics of one group: two passes in double, mean then
// variance (no cancellation in E[x²] − E[x]²), each rounded to float once.
// The sums run in 8 double lanes, then across them; the AVX2 and the
// portable path (group_stats.cpp) keep the same lanes and the same order,
// so both give the same bits.
#include <cstdint>

namespace varps::cpu {

struct GroupStats {
  float mean, rstd;
};

GroupStats group_stats(const float* xs, int64_t cnt, float eps);

}  // namespace varps::cpu
