#pragma once
// GroupNorm's per-channel affine map, the one definition the CPU backend and
// the CUDA kernels apply (in group_norm() and in the convolutions that
// normalise their input as they read it): channel c of group g maps v to
// (v − mean_g)·(γ_c·rstd_g) + β_c, each step rounded to nearest.
#include "ops/host_device.hpp"

namespace varps::ops {

// γ_c·rstd_g: the factor of channel c.
VARPS_HOST_DEVICE inline float group_norm_scale(float gamma, float rstd) { return mul_rn(gamma, rstd); }

VARPS_HOST_DEVICE inline float group_norm_affine(float v, float mean, float scale, float shift) {
  return add_rn(mul_rn(sub_rn(v, mean), scale), shift);
}

}  // namespace varps::ops
