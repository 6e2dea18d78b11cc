#pragma once
// A golden case (tests/data/golden/<case>, outputs of the official code): the
// official implementation's inputs and outputs on a small random model.
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "varps/checkpoint.hpp"
#include "varps/pipeline.hpp"

namespace varps::testing {

// A golden case with one checkpoint format on one device: the parameter of
// the suites that run every case.
struct CaseParam {
  std::string case_name;
  std::string ext;  // "pth" or "safetensors"
  std::string device = "cpu";
};

inline std::string case_param_name(const ::testing::TestParamInfo<CaseParam>& info) {
  return info.param.case_name + "_" + info.param.ext + (info.param.device == "cpu" ? "" : "_" + info.param.device);
}

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

  // The case's checkpoint `kind` ("var" or "vae") in format `ext`: beside
  // the outputs, or where config.json's "checkpoints" names it (a path from
  // the repository root; the built-in trained model is not copied).
  std::filesystem::path checkpoint(const std::string& kind, const std::string& ext) const {
    if (config.contains("checkpoints")) {
      const std::filesystem::path p = std::filesystem::path(VARPS_TEST_DATA) / ".." / ".." /
                                      config["checkpoints"][kind].get<std::string>();
      if (p.extension() != "." + ext) ADD_FAILURE() << name << " has no " << kind << " checkpoint in " << ext;
      return p;
    }
    return dir / (kind + "." + ext);
  }

  std::vector<int> patch_nums() const { return config["var"]["patch_nums"].get<std::vector<int>>(); }
  int64_t batch() const { return config["inputs"]["B"].get<int64_t>(); }
  std::vector<int> labels() const { return config["inputs"]["label_B"].get<std::vector<int>>(); }
  // The batch's labels as unguided greedy requests (teacher forcing and
  // greedy generation set their own tokens or sampling on top).
  std::vector<ImageRequest> greedy_requests() const {
    std::vector<ImageRequest> req;
    for (int c : labels()) req.push_back({c, 0, SamplingParams{0.0, 1, 0.0}});
    return req;
  }

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

// Tolerances: docs/tolerances.md.
constexpr float kLogitTol = 2e-4f;   // unguided logits (|logit| <= ~20)
constexpr float kFhatTol = 1e-5f;    // f_hat, values O(1)
constexpr float kImageTol = 1e-4f;   // decoded pixels in [-1, 1] or [0, 1]
// Guided logits (1+t)·c − t·u carry (1+2t) times the error of c and u.
inline float guided_logit_tol(double cfg) { return kLogitTol * static_cast<float>(1.0 + 2.0 * cfg); }

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

// Greedy generation (top-k 1) at every cfg of the case, against the
// reference outputs `prefix` + "gen_{cfg}_…": tokens exactly, the guided
// logits handed to the sampler and the image within tolerance, and the final
// f_hat when the case records it for this prefix (`check_fhat`).
inline void expect_greedy_generation(const Pipeline& pipe, const GoldenCase& gc, const std::string& prefix,
                                     bool check_fhat) {
  const auto pn = gc.patch_nums();
  const int64_t B = gc.batch();
  for (auto& [tag, cfg_json] : gc.config["inputs"]["cfg_tags"].items()) {
    SCOPED_TRACE(prefix + tag);
    const double cfg = cfg_json.get<double>();
    const std::string ref_name = prefix + "gen_" + tag;
    std::vector<ImageRequest> req;
    for (int c : gc.labels()) req.push_back({c, 0, SamplingParams{cfg, 1, 0.0}});
    GenerateOptions opts;
    opts.keep_f_hat = check_fhat;
    std::vector<float> worst(pn.size(), 0.0f);
    opts.on_logits = [&](int si, const float* logits, int64_t b, int64_t l, int64_t v) {
      const Tensor ref = gc.f32(ref_name + "_logits_s" + std::to_string(si));
      ASSERT_EQ(ref.data.size(), static_cast<size_t>(b * l * v));
      worst[si] = max_abs_diff(logits, ref.ptr(), ref.data.size());
    };
    const GeneratedImages out = pipe.generate(req, opts);
    for (size_t s = 0; s < pn.size(); ++s) {
      EXPECT_LT(worst[s], guided_logit_tol(cfg)) << "logits of scale " << s;
      const auto ref = gc.i32(ref_name + "_idx_s" + std::to_string(s));
      std::vector<int32_t> got;
      for (int64_t b = 0; b < B; ++b) got.insert(got.end(), out.tokens[b][s].begin(), out.tokens[b][s].end());
      EXPECT_EQ(got, ref) << "tokens of scale " << s;
    }
    if (check_fhat) {
      const Tensor fhat = gc.f32(ref_name + "_fhat");
      EXPECT_LT(max_abs_diff(out.f_hat.ptr(), fhat.ptr(), fhat.data.size()), kFhatTol);
    }
    const Tensor img = gc.f32(ref_name + "_img");
    ASSERT_EQ(out.pixels.size(), img.data.size());
    EXPECT_LT(max_abs_diff(out.pixels.data(), img.ptr(), img.data.size()), kImageTol);
  }
}

}  // namespace varps::testing
