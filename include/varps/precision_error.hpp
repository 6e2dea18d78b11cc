#pragma once
// What a reduced matrix-product precision changes against float32, measured
// on the same weights and requests: per scale, the guided logits with the
// float32 run's tokens forced (teacher forcing) against float32's, and the
// tokens each precision samples on its own (free running); over the images,
// the pixels' PSNR, of the free-running images and of float32's tokens
// decoded by the candidate.
#include <cstdint>
#include <string>
#include <vector>

#include "varps/pipeline.hpp"

namespace varps::bench {

struct ScalePrecisionError {
  int side = 0;                    // the scale's token map is side × side
  double logits_error = 0;         // ‖logits − float32's‖ / ‖float32's‖ over the scale (teacher forced)
  double kl = 0;                   // mean over tokens of KL(float32 ‖ candidate) of softmax(logits), nats
  double top1_agreement = 0;       // share of tokens whose most likely entry is float32's (teacher forced)
  double token_agreement = 0;      // share of sampled tokens equal to float32's (free running)
};

struct PrecisionError {
  int64_t images = 0;
  std::vector<ScalePrecisionError> scales;
  double logits_error = 0;   // over every scale
  double token_agreement = 0;  // over every scale's tokens (free running)
  double psnr_db = 0;        // the free-running images against float32's, pixels in [0, 1] (inf: identical)
  // float32's tokens decoded by the candidate (its residual path and
  // decoder alone) against float32's images.
  double decoded_psnr_db = 0;
};

// Runs `requests` on both pipelines (same model, float32 first) and compares.
PrecisionError measure_precision_error(const Pipeline& float32, const Pipeline& candidate,
                                       const std::vector<ImageRequest>& requests);

// The per-scale table and the totals, as Markdown.
std::string precision_error_markdown(const PrecisionError& e);

}  // namespace varps::bench
