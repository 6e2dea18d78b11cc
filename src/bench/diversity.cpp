// Diversity of one request's streams: mean over all pairs of streams of token
// disagreement (per scale and overall), pixel mean absolute difference and
// cosine similarity of the flattened images; with the built-in model's
// classifier, the distance of the images' features.
#include <cmath>
#include <string>

#include "bench/garment_features.hpp"
#include "varps/bench.hpp"
#include "varps/error.hpp"

namespace varps::bench {
namespace {

void validate(const StreamOutputs& out) {
  const size_t P = out.tokens.size();
  if (!out.images.empty() && out.images.size() != P) {
    throw Error("diversity: " + std::to_string(out.images.size()) + " images for " + std::to_string(P) +
                " token streams");
  }
  for (size_t s = 1; s < P; ++s) {
    const TokenMaps& a = out.tokens[0];
    const TokenMaps& b = out.tokens[s];
    if (b.size() != a.size()) {
      throw Error("diversity: stream " + std::to_string(s) + " has " + std::to_string(b.size()) +
                  " scales, stream 0 has " + std::to_string(a.size()));
    }
    for (size_t k = 0; k < a.size(); ++k) {
      if (b[k].size() != a[k].size()) {
        throw Error("diversity: stream " + std::to_string(s) + " has " + std::to_string(b[k].size()) +
                    " tokens at scale " + std::to_string(k) + ", stream 0 has " + std::to_string(a[k].size()));
      }
    }
  }
  for (size_t s = 0; s < out.images.size(); ++s) {
    if (out.images[s].size() != out.images[0].size()) {
      throw Error("diversity: image " + std::to_string(s) + " has " + std::to_string(out.images[s].size()) +
                  " values, image 0 has " + std::to_string(out.images[0].size()));
    }
    for (size_t i = 0; i < out.images[s].size(); ++i) {
      if (!std::isfinite(out.images[s][i])) {
        throw Error("diversity: pixel " + std::to_string(i) + " of image " + std::to_string(s) + " is not finite");
      }
    }
  }
}

double cosine(const std::vector<float>& a, const std::vector<float>& b, double norm_a, double norm_b) {
  if (norm_a == 0.0 && norm_b == 0.0) return 1.0;  // two black images are the same image
  if (norm_a == 0.0 || norm_b == 0.0) return 0.0;
  double dot = 0.0;
  for (size_t i = 0; i < a.size(); ++i) dot += static_cast<double>(a[i]) * static_cast<double>(b[i]);
  return dot / (norm_a * norm_b);
}

}  // namespace

Diversity diversity(const StreamOutputs& out, const GarmentFeatures* features) {
  validate(out);
  Diversity d;
  const bool with_features = features && !out.images.empty() &&
                             out.images[0].size() == 3u * GarmentFeatures::kSide * GarmentFeatures::kSide;
  std::vector<std::vector<float>> feats;
  if (with_features) {
    d.feature_distance = 0;
    for (const auto& img : out.images) feats.push_back(features->features(img.data()));
  }
  const size_t P = out.tokens.size();
  const size_t scales = P ? out.tokens[0].size() : 0;
  d.token_disagreement_per_scale.assign(scales, 0.0);
  if (P < 2) return d;

  size_t positions = 0;
  for (const auto& scale : out.tokens[0]) positions += scale.size();
  const bool have_images = !out.images.empty();
  std::vector<double> norms;
  if (have_images) {
    for (const auto& img : out.images) {
      double ss = 0.0;
      for (float v : img) ss += static_cast<double>(v) * static_cast<double>(v);
      norms.push_back(std::sqrt(ss));
    }
  }

  for (size_t i = 0; i < P; ++i) {
    for (size_t j = i + 1; j < P; ++j) {
      ++d.pairs;
      size_t differ_all = 0;
      for (size_t k = 0; k < scales; ++k) {
        const auto& a = out.tokens[i][k];
        const auto& b = out.tokens[j][k];
        size_t differ = 0;
        for (size_t n = 0; n < a.size(); ++n) differ += a[n] != b[n];
        differ_all += differ;
        if (!a.empty()) d.token_disagreement_per_scale[k] += static_cast<double>(differ) / static_cast<double>(a.size());
      }
      if (positions) d.token_disagreement += static_cast<double>(differ_all) / static_cast<double>(positions);
      if (have_images) {
        const auto& a = out.images[i];
        const auto& b = out.images[j];
        if (!a.empty()) {
          double sad = 0.0;
          for (size_t n = 0; n < a.size(); ++n) sad += std::fabs(static_cast<double>(a[n]) - static_cast<double>(b[n]));
          d.pixel_mad += sad / static_cast<double>(a.size());
        }
        d.cosine_similarity += cosine(a, b, norms[i], norms[j]);
      }
      if (with_features) {
        double ss = 0.0;
        for (size_t n = 0; n < feats[i].size(); ++n) {
          const double e = static_cast<double>(feats[i][n]) - static_cast<double>(feats[j][n]);
          ss += e * e;
        }
        d.feature_distance += std::sqrt(ss);
      }
    }
  }
  const double pairs = static_cast<double>(d.pairs);
  for (double& v : d.token_disagreement_per_scale) v /= pairs;
  d.token_disagreement /= pairs;
  d.pixel_mad /= pairs;
  d.cosine_similarity /= pairs;
  if (with_features) d.feature_distance /= pairs;
  return d;
}

}  // namespace varps::bench
