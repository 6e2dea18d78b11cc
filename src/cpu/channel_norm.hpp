#pragma once
// GroupNorm's per-channel affine map, as the CPU's convolutions apply it to
// their input as they read it (NormOnRead) and group_norm() applies it.
#include <cstdint>

#include "backend.hpp"
#include "ops/group_norm.hpp"

namespace varps::cpu {

// The normalised value of channel c: (v − mean)·(γ_c·rstd) + β_c.
struct ChannelNorm {
  float mean = 0.0f, scale = 1.0f, shift = 0.0f;
  float operator()(float v) const { return ops::group_norm_affine(v, mean, scale, shift); }
};

inline ChannelNorm channel_norm(const NormOnRead& norm, int64_t n, int64_t C, int64_t c) {
  const int64_t g = c / (C / norm.groups);
  const float* st = norm.stats + (n * norm.groups + g) * 2;
  return {st[0], ops::group_norm_scale(norm.gamma[c], st[1]), norm.beta[c]};
}

}  // namespace varps::cpu
