// The classifier's forward pass, written plainly: at 32x32 it is a few
// million multiply-adds per image, nothing beside the generation it measures.
#include "bench/garment_features.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "varps/checkpoint.hpp"
#include "varps/error.hpp"

namespace varps::bench {
namespace {

Tensor need(const Checkpoint& ck, const std::string& name, const Shape& shape) {
  const TensorRecord* rec = ck.find(name);
  if (!rec) throw Error(ck.path().string() + ": not the garment classifier: tensor '" + name + "' is missing");
  if (rec->shape != shape)
    throw Error(ck.path().string() + ": tensor '" + name + "' has shape " + shape_str(rec->shape) + ", expected " +
                shape_str(shape));
  return ck.read_f32(*rec);
}

// The input standardisation the classifier was trained with, carried in the
// file's metadata (training/export.py).
float metadata_number(const Checkpoint& ck, const std::string& key) {
  const auto it = ck.metadata().find(key);
  if (it == ck.metadata().end())
    throw Error(ck.path().string() + ": not the garment classifier: metadata '" + key + "' is missing");
  try {
    size_t used = 0;
    const float v = std::stof(it->second, &used);
    if (used == it->second.size() && std::isfinite(v) && (key != "input_std" || v > 0.0f)) return v;
  } catch (const std::exception&) {
  }
  throw Error(ck.path().string() + ": classifier metadata '" + key + "' is '" + it->second +
              "', expected a finite number" + (key == "input_std" ? " > 0" : ""));
}

// 3x3 convolution, zero padding 1, then ReLU and 2x2 max pooling:
// [cin, side, side] -> [cout, side/2, side/2].
std::vector<float> conv_relu_pool(const std::vector<float>& in, int cin, int side, const Tensor& w, const Tensor& b) {
  const int cout = static_cast<int>(w.dim(0));
  std::vector<float> conv(static_cast<size_t>(cout) * side * side);
  for (int o = 0; o < cout; ++o)
    for (int y = 0; y < side; ++y)
      for (int x = 0; x < side; ++x) {
        float s = b.data[o];
        for (int c = 0; c < cin; ++c)
          for (int dy = -1; dy <= 1; ++dy)
            for (int dx = -1; dx <= 1; ++dx) {
              const int yy = y + dy, xx = x + dx;
              if (yy < 0 || yy >= side || xx < 0 || xx >= side) continue;
              s += w.data[((static_cast<size_t>(o) * cin + c) * 3 + dy + 1) * 3 + dx + 1] *
                   in[(static_cast<size_t>(c) * side + yy) * side + xx];
            }
        conv[(static_cast<size_t>(o) * side + y) * side + x] = std::max(s, 0.0f);
      }
  const int half = side / 2;
  std::vector<float> out(static_cast<size_t>(cout) * half * half);
  for (int o = 0; o < cout; ++o)
    for (int y = 0; y < half; ++y)
      for (int x = 0; x < half; ++x) {
        const float* p = &conv[(static_cast<size_t>(o) * side + 2 * y) * side + 2 * x];
        out[(static_cast<size_t>(o) * half + y) * half + x] = std::max({p[0], p[1], p[side], p[side + 1]});
      }
  return out;
}

std::vector<float> linear(const std::vector<float>& in, const Tensor& w, const Tensor& b, bool relu) {
  const int64_t n = w.dim(0), k = w.dim(1);
  std::vector<float> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    float s = b.data[i];
    for (int64_t j = 0; j < k; ++j) s += w.data[i * k + j] * in[j];
    out[i] = relu ? std::max(s, 0.0f) : s;
  }
  return out;
}

}  // namespace

GarmentFeatures GarmentFeatures::load(const std::filesystem::path& file) {
  const Checkpoint ck = Checkpoint::open(file);
  GarmentFeatures g;
  g.conv1_w_ = need(ck, "conv1.weight", {32, 1, 3, 3});
  g.conv1_b_ = need(ck, "conv1.bias", {32});
  g.conv2_w_ = need(ck, "conv2.weight", {64, 32, 3, 3});
  g.conv2_b_ = need(ck, "conv2.bias", {64});
  g.conv3_w_ = need(ck, "conv3.weight", {64, 64, 3, 3});
  g.conv3_b_ = need(ck, "conv3.bias", {64});
  g.fc1_w_ = need(ck, "fc1.weight", {kFeatures, 64 * 4 * 4});
  g.fc1_b_ = need(ck, "fc1.bias", {kFeatures});
  g.fc2_w_ = need(ck, "fc2.weight", {kClasses, kFeatures});
  g.fc2_b_ = need(ck, "fc2.bias", {kClasses});
  g.input_mean_ = metadata_number(ck, "input_mean");
  g.input_std_ = metadata_number(ck, "input_std");
  return g;
}

std::vector<float> GarmentFeatures::features(const float* rgb01, std::vector<float>* logits) const {
  constexpr int plane = kSide * kSide;
  std::vector<float> grey(plane);
  for (int i = 0; i < plane; ++i)
    grey[i] = ((rgb01[i] + rgb01[plane + i] + rgb01[2 * plane + i]) / 3.0f - input_mean_) / input_std_;
  std::vector<float> x = conv_relu_pool(grey, 1, kSide, conv1_w_, conv1_b_);
  x = conv_relu_pool(x, 32, kSide / 2, conv2_w_, conv2_b_);
  x = conv_relu_pool(x, 64, kSide / 4, conv3_w_, conv3_b_);
  std::vector<float> f = linear(x, fc1_w_, fc1_b_, /*relu=*/true);
  if (logits) *logits = linear(f, fc2_w_, fc2_b_, /*relu=*/false);
  return f;
}

}  // namespace varps::bench
