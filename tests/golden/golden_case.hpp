#pragma once
// A golden case (tests/data/golden/<case>, copied from shared/golden): the
// official implementation's inputs and outputs on a small random model.
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "varps/checkpoint.hpp"

namespace varps::testing {

struct GoldenCase {
  std::string name;
  std::filesystem::path dir;
  nlohmann::json config;
  Checkpoint golden;

  explicit GoldenCase(const std::string& case_name)
      : name(case_name),
        dir(std::filesystem::path(VARPS_TEST_DATA) / "golden" / case_name),
        config(nlohmann::json::parse(std::ifstream(dir / "config.json"))),
        golden(Checkpoint::open(dir / "golden.safetensors")) {}

  std::vector<int> patch_nums() const { return config["var"]["patch_nums"].get<std::vector<int>>(); }
  int64_t batch() const { return config["inputs"]["B"].get<int64_t>(); }
  std::vector<int> labels() const { return config["inputs"]["label_B"].get<std::vector<int>>(); }

  Tensor f32(const std::string& n) const { return golden.read_f32(n); }
  std::vector<int32_t> i32(const std::string& n) const {
    const TensorI64 t = golden.read_i64(n);
    return std::vector<int32_t>(t.data.begin(), t.data.end());
  }
  // [scale][B·pn²]
  std::vector<std::vector<int32_t>> token_maps(const std::string& prefix) const {
    std::vector<std::vector<int32_t>> maps;
    for (size_t s = 0; s < patch_nums().size(); ++s) maps.push_back(i32(prefix + std::to_string(s)));
    return maps;
  }
};

inline float max_abs_diff(const float* a, const float* b, size_t n) {
  float m = 0.0f;
  for (size_t i = 0; i < n; ++i) {
    const float d = std::fabs(a[i] - b[i]);
    if (!(d <= m)) m = std::isnan(d) ? INFINITY : d;
  }
  return m;
}

inline float max_abs(const float* a, size_t n) {
  float m = 0.0f;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(a[i]));
  return m;
}

}  // namespace varps::testing
