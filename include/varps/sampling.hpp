#pragma once

namespace varps {

// Classifier-free guidance and sampling filters of one image. Defaults are
// the official demo's.
struct SamplingParams {
  double cfg = 4.0;     // guidance weight at the last scale; 0 disables guidance
  int top_k = 900;      // keep logits >= the k-th largest; 0: off
  double top_p = 0.95;  // nucleus mass; 0: off
  // Divides the guided logits before the filters; 1 leaves them untouched
  // (the official sampler has no temperature). Must be > 0.
  double temperature = 1.0;
};

}  // namespace varps
