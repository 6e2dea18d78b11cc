#pragma once
// The built-in Fashion-MNIST classifier (training/train_classifier.py; the
// same network as scripts/quality.py runs in numpy): a small CNN whose 128
// penultimate activations are the feature space of the quality measures.
// Streams' images compared in it say whether they show different garments,
// not merely different pixels.
#include <filesystem>
#include <vector>

#include "varps/tensor.hpp"

namespace varps::bench {

class GarmentFeatures {
 public:
  static constexpr int kSide = 32;
  static constexpr int kFeatures = 128;
  static constexpr int kClasses = 10;

  // Throws varps::Error naming the file and tensor when it is not the
  // classifier's safetensors file.
  static GarmentFeatures load(const std::filesystem::path& file);

  // One RGB image [3, 32, 32] in [0, 1] (a generated image): its 128
  // features, and its 10 class logits when `logits` is given.
  std::vector<float> features(const float* rgb01, std::vector<float>* logits = nullptr) const;

 private:
  Tensor conv1_w_, conv1_b_, conv2_w_, conv2_b_, conv3_w_, conv3_b_, fc1_w_, fc1_b_, fc2_w_, fc2_b_;
  float input_mean_ = 0.0f, input_std_ = 1.0f;  // grey-level standardisation, from the file
};

}  // namespace varps::bench
