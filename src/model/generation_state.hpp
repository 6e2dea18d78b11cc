#pragma once
// What a request of one shape holds on the backend, allocated once and reused
// by the next request of the same shape (static memory): the
// transformer session (KV cache, activations), the input, logits and token
// maps, the sampling parameters, f_hat and the residual path's maps, the
// decoder's arena and images, and the backend's recordings of each scale's
// steps and each decoder pass, which bake in those arrays' addresses (and
// the shape) and so live and die with them.
#include <memory>
#include <optional>
#include <vector>

#include "backend.hpp"
#include "model/var_transformer.hpp"
#include "model/vqvae.hpp"
#include "varps/fast_modes.hpp"

namespace varps {

struct GenerationShape {
  int64_t images = 0;               // B
  int64_t image_rows = 0;           // N: B plus one per guided image
  std::vector<int64_t> uncond_row;  // per image; -1 without guidance
  int64_t streams = 1;              // P of the attached adapter
  bool filters = false;             // some image keeps a top-k or top-p filter (sample_filters)
  FastModes fast;
  bool operator==(const GenerationShape&) const = default;
};

// A scale's three steps, recorded apart so that the stage clock's marks lie
// between them.
struct ScaleSteps {
  std::unique_ptr<StepRecording> transformer;  // the backbone pass: logits
  std::unique_ptr<StepRecording> sampling;     // guidance and the draw: a token map
  std::unique_ptr<StepRecording> residual;     // f_hat += Phi(up(tokens)), and the next scale's input
};

// The decoder's memory for a request's images, and a recording of each of
// its passes.
struct DecoderState {
  MapArena arena;  // in the session's KV cache memory when that holds it
  FeatureMap images;  // [B, 3, H, W]
  std::vector<Vqvae::DecoderPass> passes;
  std::vector<std::unique_ptr<StepRecording>> steps;  // per pass
};

struct GenerationState {
  GenerationShape shape;
  VarSession session;
  Array<float> x;              // [R, max_l, C]
  Array<float> logits;         // [N, max_l, V]
  Array<float> guided_logits;  // [B, max_l, V] with guidance
  Array<float> next_tokens;    // [B, max_l, Cvae]
  Array<int32_t> all_idx;      // every scale's token map, [scale][B, l]
  std::vector<int64_t> scale_offset;  // where each scale's maps start in all_idx
  Array<SampleJob> jobs;       // [B], written once per request
  FeatureMap f_hat;
  ResidualMaps residual;
  std::vector<ScaleSteps> steps;  // per scale
  std::optional<DecoderState> decoder;  // from the first request of this shape that decodes
  // With a refiner: its session and input; with pruning, the head's input
  // [N, max_l, C] of the pruned scales and the one before them.
  std::optional<VarSession> refiner_session;
  Array<float> refiner_x;
  Array<float> hidden;
};

}  // namespace varps
