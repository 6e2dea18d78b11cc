#pragma once
// FastVAR's cached token pruning on one scale (spec: docs/spec/fast-modes.md
// "Token pruning"): which tokens a row keeps, and the full scale's hidden
// states rebuilt from the kept tokens' and the previous scale's. Host arrays, row-major
// [rows, tokens, C]; the generation moves them to and from the backend.
#include <cstdint>
#include <vector>

namespace varps {

// Tokens a row keeps of a scale of l tokens when the fraction `prune` is
// left out: l − ⌊l·prune⌋, at least 1.
int64_t kept_tokens(int64_t l, double prune);

// The `keep` positions of one row's input x [l, C] farthest (squared
// Euclidean distance) from the row's mean token, in ascending order; ties go
// to the earlier position.
std::vector<int64_t> pivotal_tokens(const float* x, int64_t l, int64_t C, int64_t keep);

class PrunedScale {
 public:
  // Picks each row's kept tokens from x [rows, l, C] and compacts x in
  // place to [rows, keep, C].
  PrunedScale(float* x, int64_t rows, int64_t l, int64_t C, int64_t keep);
  int64_t keep() const { return keep_; }
  const std::vector<int64_t>& kept() const { return kept_; }  // [rows·keep]

  // full [rows, side², C]: the previous scale's hidden states prev
  // [rows, prev_side², C] area-resampled to side×side, the kept positions
  // overwritten by the pass's hidden states h [rows, keep, C].
  void restore(const float* h, const float* prev, int64_t prev_side, int64_t side, float* full) const;

 private:
  int64_t rows_, l_, C_, keep_;
  std::vector<int64_t> kept_;
};

}  // namespace varps
