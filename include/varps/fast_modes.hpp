#pragma once
// Training-free ways to spend less per image than the exact path, from the
// VAR literature (docs/spec/fast-modes.md). All are off by default; with all
// off a generation is the exact path, bit for bit. Scales are counted from 1,
// as `varps generate --verbose` prints them.
#include <string>

namespace varps {

struct VarConfig;

struct FastModes {
  // SkipVAR/StageVAR: the unconditional rows run only in scales
  // 1..cfg_until_scale; later scales sample the conditional logits alone.
  // 0: guidance at every scale.
  int cfg_until_scale = 0;
  // FastVAR's cached token pruning: at the last `prune_scales` scales, the
  // fraction `prune` of each image's tokens (those nearest the scale's mean
  // input token) skip the transformer; their outputs are the previous
  // scale's, area-resampled. 0: no pruning.
  double prune = 0.0;
  int prune_scales = 2;
  // CoDe's drafter and refiner: the pipeline's model draws scales
  // 1..refine_from_scale−1, the attached refiner (Pipeline::attach_refiner)
  // the rest. 0: no refiner.
  int refine_from_scale = 0;

  bool any() const { return cfg_until_scale > 0 || prune > 0.0 || refine_from_scale > 0; }
  bool operator==(const FastModes&) const = default;
};

// Throws varps::Error naming the mode when a setting does not fit a model
// of `cfg`'s scales, or the refiner is asked for and none is attached.
void check_fast_modes(const FastModes& modes, const VarConfig& cfg, bool has_refiner);
// "cfg until scale 3, prune 0.5 at the last 2 scales, refiner from scale 9";
// "exact" when all are off.
std::string describe(const FastModes& modes);

}  // namespace varps
