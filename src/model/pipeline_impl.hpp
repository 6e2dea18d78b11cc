#pragma once
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "backend.hpp"
#include "model/generation_state.hpp"
#include "model/stream_adapter.hpp"
#include "model/var_transformer.hpp"
#include "model/vqvae.hpp"
#include "varps/pipeline.hpp"

namespace varps {

// Throws unless `tokens` has `expected` entries, each in [0, vocab).
void check_token_map(const std::vector<int32_t>& tokens, int64_t expected, int64_t vocab, int scale);

struct Pipeline::Impl {
  std::unique_ptr<Backend> backend;
  std::optional<VarTransformer> var;
  std::optional<Vqvae> vae;
  std::optional<StreamAdapter> adapter;
  std::optional<VarTransformer> refiner;  // FastModes::refine_from_scale
  std::string origin;

  // The last request's state, kept for the next request of the same shape.
  // A request takes it out while it runs, so concurrent requests never share
  // one (the one that cannot take it allocates its own).
  std::unique_ptr<GenerationState> take_state(const GenerationShape& shape) const;
  void keep_state(std::unique_ptr<GenerationState> state) const;
  // Before the weights or the adapter its recordings point at change.
  void drop_state() const;

  FeatureMap upload_map(const Tensor& t) const;
  Tensor download_map(const FeatureMap& m) const;

 private:
  mutable std::mutex state_mutex_;
  mutable std::unique_ptr<GenerationState> state_;
};

}  // namespace varps
