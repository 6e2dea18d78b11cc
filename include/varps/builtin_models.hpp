#pragma once
// The trained models shipped with varps: small VARs trained on Fashion-MNIST
// (training/, docs/quality.md). They live in models/ of the source tree and
// in share/varps/models when installed; VARPS_MODEL_DIR overrides both.
#include <filesystem>
#include <string>
#include <vector>

namespace varps {

struct BuiltinModel {
  std::string name;
  std::filesystem::path var, vae;
  std::filesystem::path classifier;  // the quality measures' classifier (docs/quality.md)
  std::string summary;  // one line: what it is and what its images show
};

// "fmnist" (the default model of every command: depth 8) and "fmnist-d4"
// (depth 4, the baseline of the ParScale comparisons).
std::vector<std::string> builtin_model_names();
// Throws varps::Error naming the folders searched when the files are missing,
// and the known names for an unknown one.
BuiltinModel find_builtin_model(const std::string& name);
// Where the search looks, in order.
std::vector<std::filesystem::path> builtin_model_dirs();

}  // namespace varps
