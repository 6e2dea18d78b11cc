#include "model/weights.hpp"

#include <cmath>
#include <map>

#include "varps/error.hpp"

namespace varps {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string problem_list(const std::vector<std::string>& problems) {
  std::string out;
  const size_t shown = std::min<size_t>(problems.size(), 8);
  for (size_t i = 0; i < shown; ++i) out += (i ? "; " : "") + problems[i];
  if (problems.size() > shown) out += "; and " + std::to_string(problems.size() - shown) + " more";
  return out;
}

class CheckpointWeights final : public WeightSource {
 public:
  explicit CheckpointWeights(const Checkpoint& ckpt) : ckpt_(ckpt) {}
  std::string origin() const override { return ckpt_.path().string(); }

  Tensor take(const std::string& name, const Shape& shape) override {
    taken_.insert(name);
    const TensorRecord* rec = ckpt_.find(name);
    if (!rec) {
      problems_.push_back("missing tensor '" + name + "' (expected " + shape_str(shape) + ")");
      return Tensor(shape);
    }
    if (rec->shape != shape) {
      problems_.push_back("tensor '" + name + "' has shape " + shape_str(rec->shape) + ", expected " +
                          shape_str(shape));
      return Tensor(shape);
    }
    return ckpt_.read_f32(*rec);
  }

  void finish(const std::set<std::string>& ignorable) override {
    for (const auto& rec : ckpt_.tensors()) {
      if (taken_.count(rec.name) || ignorable.count(rec.name)) continue;
      problems_.push_back("unexpected tensor '" + rec.name + "' " + shape_str(rec.shape));
    }
    if (!problems_.empty()) throw Error(origin() + ": " + problem_list(problems_));
  }

 private:
  const Checkpoint& ckpt_;
  std::set<std::string> taken_;
  std::vector<std::string> problems_;
};

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

class RandomWeights final : public WeightSource {
 public:
  RandomWeights(uint64_t seed, std::string label) : seed_(seed), label_(std::move(label)) {}
  std::string origin() const override { return label_; }

  Tensor take(const std::string& name, const Shape& shape) override {
    Tensor t(shape);
    const bool is_norm = name.find("norm") != std::string::npos && ends_with(name, ".weight");
    if (ends_with(name, ".bias") || name.find("zero_k_bias") != std::string::npos) return t;
    if (is_norm) {
      std::fill(t.data.begin(), t.data.end(), 1.0f);
      return t;
    }
    if (name.find("scale_mul_1H11") != std::string::npos) {
      std::fill(t.data.begin(), t.data.end(), std::log(4.0f));
      return t;
    }
    // Fan-in: every axis but the first (linear [out, in], conv [out, in, k, k]).
    int64_t fan_in = 1;
    for (size_t i = 1; i < shape.size(); ++i) fan_in *= shape[i];
    float bound = std::sqrt(3.0f / static_cast<float>(std::max<int64_t>(fan_in, 1)));
    if (shape.size() <= 1 || name.find("emb") != std::string::npos || name.find("pos_") == 0 ||
        name.find("ada_gss") != std::string::npos)
      bound = 0.05f;
    fill_uniform(t, seed_, name, bound);
    return t;
  }

  void finish(const std::set<std::string>&) override {}

 private:
  uint64_t seed_;
  std::string label_;
};

}  // namespace

void fill_uniform(Tensor& t, uint64_t seed, const std::string& name, float bound) {
  const uint64_t base = splitmix64(seed ^ fnv1a(name));
  const int64_t n = t.size();
#pragma omp parallel for schedule(static) if (n > 1 << 20)
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t r = splitmix64(base + static_cast<uint64_t>(i));
    const float u = static_cast<float>(r >> 40) * 0x1.0p-24f;  // [0, 1)
    t.data[i] = (2.0f * u - 1.0f) * bound;
  }
}

std::unique_ptr<WeightSource> checkpoint_weights(const Checkpoint& ckpt) {
  return std::make_unique<CheckpointWeights>(ckpt);
}

std::unique_ptr<WeightSource> random_weights(uint64_t seed, std::string label) {
  return std::make_unique<RandomWeights>(seed, std::move(label));
}

}  // namespace varps
