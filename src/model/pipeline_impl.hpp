#pragma once
#include <memory>
#include <optional>
#include <string>

#include "backend.hpp"
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
  std::string origin;

  FeatureMap upload_map(const Tensor& t) const;
  Tensor download_map(const FeatureMap& m) const;
};

}  // namespace varps
