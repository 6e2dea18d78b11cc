#pragma once
#include <memory>
#include <optional>
#include <string>

#include "backend.hpp"
#include "model/var_transformer.hpp"
#include "model/vqvae.hpp"
#include "varps/pipeline.hpp"

namespace varps {

struct Pipeline::Impl {
  std::unique_ptr<Backend> backend;
  std::optional<VarTransformer> var;
  std::optional<Vqvae> vae;
  std::string origin;

  FeatureMap upload_map(const Tensor& t) const;
  Tensor download_map(const FeatureMap& m) const;
};

}  // namespace varps
