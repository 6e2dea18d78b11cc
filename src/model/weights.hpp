#pragma once
// Where a model's tensors come from: a checkpoint (validated by name and
// shape) or deterministic random values (for the built-in model and timing
// presets). Problems are collected while a model binds its tensors and
// reported together by `finish`, so one run names every missing, unexpected
// or mis-shaped tensor.
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "varps/checkpoint.hpp"
#include "varps/tensor.hpp"

namespace varps {

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  virtual std::string origin() const = 0;
  // The tensor `name` with exactly `shape`; on a problem, records it and
  // returns zeros so binding can go on and report everything at once.
  virtual Tensor take(const std::string& name, const Shape& shape) = 0;
  // Throws varps::Error listing every problem; `ignorable` names tensors
  // that may be present without being used (derivable buffers, training
  // statistics).
  virtual void finish(const std::set<std::string>& ignorable) = 0;
};

std::unique_ptr<WeightSource> checkpoint_weights(const Checkpoint& ckpt);
// Values depend only on (seed, tensor name, index): uniform with the
// variance of PyTorch's default init for weights, ones for norm scales,
// zeros for biases.
std::unique_ptr<WeightSource> random_weights(uint64_t seed, std::string label);
// Uniform in [-bound, bound); each value depends only on (seed, name, index).
void fill_uniform(Tensor& t, uint64_t seed, const std::string& name, float bound);

}  // namespace varps
