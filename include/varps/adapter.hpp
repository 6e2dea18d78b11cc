#pragma once
// A ParScale adapter (spec: docs/spec/parscale.md): per-stream prefix keys/values for
// every attention layer and the aggregation network that weighs the P
// streams' final hidden states into one. Host tensors; a Pipeline uploads
// them when the adapter is attached.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "varps/config.hpp"
#include "varps/tensor.hpp"

namespace varps {

class Checkpoint;

struct ParScaleAdapter {
  int streams = 0;        // P   (metadata parscale_n)
  int prefix_tokens = 0;  // T   (metadata parscale_n_tokens)
  double smooth = 0.0;    // s   (metadata parscale_attn_smooth), weights >= s/P
  std::vector<Tensor> prefix_k, prefix_v;  // per block [P, H, T, head_dim]
  Tensor aggregate0_w, aggregate0_b;       // [C, P·C], [C]
  Tensor aggregate2_w, aggregate2_b;       // [P, C], [P]
  std::string origin;                      // file name or "random init (...)"

  int depth() const { return static_cast<int>(prefix_k.size()); }
  int64_t heads() const;
  int64_t head_dim() const;
  int64_t embed_dim() const;
  uint64_t bytes() const;  // float32 tensor data

  // Reads and checks an adapter file: metadata present and consistent with
  // every tensor's shape, no missing or unexpected tensors. Throws
  // varps::Error naming the file and the tensor or field.
  static ParScaleAdapter load(const std::filesystem::path& path);
  // The same, for a file already open.
  static ParScaleAdapter from_checkpoint(const Checkpoint& file);
  // An untrained adapter for experiments and benchmarks: seeded random
  // prefixes (keys of unit norm on average, like the model's L2-normalised
  // keys; values of the scale of 0.02), aggregate.0 with PyTorch's default
  // init, aggregate.2 zero so every stream starts with weight 1/P.
  static ParScaleAdapter random_init(const VarConfig& model, int streams, int prefix_tokens, uint64_t seed,
                                     double smooth = 0.01);
  void save(const std::filesystem::path& path) const;

  // Throws varps::Error unless the adapter fits the model (depth, heads,
  // head_dim, C), naming the tensor and both shapes.
  void check_fits(const VarConfig& model) const;
};

}  // namespace varps
