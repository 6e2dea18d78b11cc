// The golden cases with reduced-precision matrix operands (bf16 on the CPU
// and, where there is one, the GPU; int8 on the CPU): teacher-forced logits
// within the stated tolerance of the official float32 outputs, greedy token
// agreement reported. The CUDA cases skip without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <iostream>
#include <tuple>

#include "cuda/cuda_available.hpp"
#include "golden/golden_case.hpp"
#include "varps/pipeline.hpp"

namespace varps::testing {
namespace {

// The logits' normalised error, ‖got − reference‖ / ‖reference‖, through a
// few blocks: bf16 operands have 8 significant bits; int8 ones 7 bits and a
// sign against each row's (or weight column's) largest magnitude.
// docs/tolerances.md gives what each case shows.
double logit_tolerance(const std::string& precision) { return precision == "int8" ? 6e-2 : 3e-2; }

double normalised_error(const float* got, const float* ref, size_t n) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    const double d = static_cast<double>(got[i]) - ref[i];
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  return std::sqrt(num / den);
}

// (device, precision, case)
using Param = std::tuple<std::string, std::string, std::string>;
class ReducedPrecisionGolden : public ::testing::TestWithParam<Param> {};

TEST_P(ReducedPrecisionGolden, LogitsWithinToleranceAndGreedyAgreementReported) {
  const auto& [device, precision, name] = GetParam();
  if (device == "cuda") VARPS_SKIP_WITHOUT_CUDA();
  const GoldenCase gc(name);
  PipelineOptions opts;
  opts.device = device;
  opts.precision = precision;
  opts.threads = 2;
  const Pipeline pipe = Pipeline::from_files(gc.dir / "var.safetensors", gc.dir / "vae.safetensors", opts);

  // Teacher forcing: every scale's logits against the reference.
  const Tensor ref = gc.f32("logits_BLV");
  const int64_t B = gc.batch(), L = ref.dim(1), V = ref.dim(2);
  const std::vector<ImageRequest> req = gc.greedy_requests();
  const auto gt = gc.token_maps("gt_idx_s");
  GenerateOptions forced;
  forced.forced_tokens = &gt;
  forced.decode = false;
  std::vector<float> got(static_cast<size_t>(B * L * V));
  int64_t offset = 0;
  forced.on_logits = [&](int, const float* logits, int64_t b, int64_t l, int64_t v) {
    for (int64_t i = 0; i < b; ++i)
      std::copy(logits + i * l * v, logits + (i + 1) * l * v, got.begin() + (i * L + offset) * V);
    offset += l;
  };
  pipe.generate(req, forced);
  const double err = normalised_error(got.data(), ref.ptr(), got.size());
  EXPECT_LE(err, logit_tolerance(precision)) << "teacher-forced logits, " << precision;
  // The operands really are rounded: float32 products land within 1e-5.
  EXPECT_GT(err, 1e-5) << "no rounding seen";

  // Greedy generation: agreement with the reference tokens, reported.
  for (auto& [tag, cfg_json] : gc.config["inputs"]["cfg_tags"].items()) {
    std::vector<ImageRequest> greedy;
    for (int c : gc.labels()) greedy.push_back({c, 0, SamplingParams{cfg_json.get<double>(), 1, 0.0}});
    const GeneratedImages out = pipe.generate(greedy);
    int64_t same = 0, total = 0;
    for (size_t s = 0; s < gc.patch_nums().size(); ++s) {
      const auto want = gc.i32("gen_" + tag + "_idx_s" + std::to_string(s));
      const int64_t l = static_cast<int64_t>(want.size()) / B;
      for (int64_t b = 0; b < B; ++b)
        for (int64_t i = 0; i < l; ++i, ++total) same += out.tokens[b][s][i] == want[b * l + i];
    }
    const std::string agreement = std::to_string(same) + "/" + std::to_string(total);
    RecordProperty("greedy_token_agreement_" + tag, agreement);
    std::cout << "[ " << precision << "     ] " << device << " " << name << " cfg " << tag << ": logits error " << err
              << ", greedy tokens agreeing " << agreement << "\n";
  }
}

std::string param_name(const ::testing::TestParamInfo<Param>& info) {
  return std::get<1>(info.param) + "_" + std::get<2>(info.param);
}

INSTANTIATE_TEST_SUITE_P(Cpu, ReducedPrecisionGolden,
                         ::testing::Combine(::testing::Values("cpu"), ::testing::Values("bf16", "int8"),
                                            ::testing::Values("tiny", "small", "saln")),
                         param_name);
INSTANTIATE_TEST_SUITE_P(Cuda, ReducedPrecisionGolden,
                         ::testing::Combine(::testing::Values("cuda"), ::testing::Values("bf16"),
                                            ::testing::Values("tiny", "small", "saln")),
                         param_name);

}  // namespace
}  // namespace varps::testing
