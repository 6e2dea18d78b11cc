#pragma once
// Token sampling: top-k, then top-p (as the official sampler), then one draw
// from a counter-based generator.
//
// Random scheme: the draw for token t of scale s of an image with seed S is
// Philox4x32-10 with key (S mod 2^32, S >> 32) and counter (t, s, 0, 0); the
// first two output words form a 53-bit uniform u in [0, 1). The token is the
// first vocabulary index (in index order) whose cumulative kept probability
// exceeds u. Nothing depends on the batch: an image's tokens are a function
// of its class, seed and sampling parameters alone.
#include <cstdint>

#include "ops/philox.hpp"

namespace varps {


// logits[V] is clobbered (divided by the temperature unless it is 1,
// filtered entries become -inf). top_k <= 0 or >= V and top_p <= 0 switch
// the filters off.
int32_t sample_token(float* logits, int64_t V, int top_k, double top_p, double temperature, double u);

}  // namespace varps
