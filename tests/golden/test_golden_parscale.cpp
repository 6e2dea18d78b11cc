// The golden ParScale cases: teacher forcing (logits and aggregation
// weights) for the random saln adapters (P = 2, 3, both checkpoint formats)
// and for the trained Fashion-MNIST adapters (fmnist-parscale, P = 1, 2, 4, 8,
// against the PyTorch forward that trained them); greedy generation for saln.
// Tolerances: docs/tolerances.md.
#include <gtest/gtest.h>

#include "cuda/cuda_available.hpp"
#include "golden/golden_case.hpp"
#include "varps/adapter.hpp"
#include "varps/pipeline.hpp"

namespace varps::testing {
namespace {

constexpr float kWeightTol = 1e-5f;  // aggregation weights in [s/P, 1]

// A golden case, a checkpoint format and a device, with one of its adapters.
struct Param : CaseParam {
  int streams = 1;
};

Param param(const std::string& case_name, int streams, const std::string& ext, const std::string& device = "cpu") {
  Param p;
  p.case_name = case_name;
  p.ext = ext;
  p.device = device;
  p.streams = streams;
  return p;
}

void PrintTo(const Param& p, std::ostream* os) {
  *os << p.case_name << " P=" << p.streams << " " << p.ext << " " << p.device;
}

// The instantiation's name says the case. (Appended piece by piece: GCC 12
// warns, wrongly, about "literal" + std::string.)
std::string param_name(const ::testing::TestParamInfo<Param>& info) {
  std::string name = "P";
  name += std::to_string(info.param.streams);
  name += "_";
  name += info.param.ext;
  if (info.param.device != "cpu") name += "_" + info.param.device;
  return name;
}

class GoldenParScale : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    if (GetParam().device == "cuda") VARPS_SKIP_WITHOUT_CUDA();
    gc_ = std::make_unique<GoldenCase>(GetParam().case_name);
    PipelineOptions opts;
    opts.threads = 2;
    opts.device = GetParam().device;
    pipe_ = std::make_unique<Pipeline>(
        Pipeline::from_files(gc_->checkpoint("var", GetParam().ext), gc_->checkpoint("vae", GetParam().ext), opts));
    adapter_ = ParScaleAdapter::load(adapter_path());
    pipe_->attach_adapter(adapter_);
  }
  // Beside the outputs, or where config.json's "adapters" names it (a path
  // from the repository root: the trained adapters are not copied).
  std::filesystem::path adapter_path() const {
    const std::string P = std::to_string(GetParam().streams);
    if (gc_->config.contains("adapters"))
      return std::filesystem::path(VARPS_TEST_DATA) / ".." / ".." / gc_->config["adapters"][P].get<std::string>();
    std::string file = "parscale_p";
    file += P;
    file += ".safetensors";
    return gc_->dir / file;
  }
  std::string tag(const std::string& name) const { return "ps" + std::to_string(GetParam().streams) + "_" + name; }

  std::unique_ptr<GoldenCase> gc_;
  std::unique_ptr<Pipeline> pipe_;
  ParScaleAdapter adapter_;
};

TEST_P(GoldenParScale, AdapterMetadata) {
  const auto& ps = gc_->config["parscale"];
  EXPECT_EQ(adapter_.streams, GetParam().streams);
  EXPECT_EQ(adapter_.prefix_tokens, ps["T"].get<int>());
  EXPECT_DOUBLE_EQ(adapter_.smooth, ps["smooth"].get<double>());
  EXPECT_EQ(pipe_->adapter_streams(), GetParam().streams);
}

TEST_P(GoldenParScale, TeacherForcedLogitsAndWeights) {
  const int64_t B = gc_->batch(), P = GetParam().streams;
  const Tensor ref = gc_->f32(tag("logits_BLV"));  // [B, L, V]
  const Tensor ref_w = gc_->f32(tag("w_BLP"));     // [B, L, P]
  const int64_t L = ref.dim(1), V = ref.dim(2);
  ASSERT_EQ(ref_w.dim(2), P);
  const std::vector<ImageRequest> req = gc_->greedy_requests();
  const auto gt = gc_->token_maps("gt_idx_s");
  GenerateOptions opts;
  opts.forced_tokens = &gt;
  opts.decode = false;
  float worst = 0.0f, worst_w = 0.0f;
  int64_t offset = 0, w_offset = 0;
  opts.on_logits = [&](int, const float* logits, int64_t b, int64_t l, int64_t v) {
    ASSERT_EQ(b, B);
    ASSERT_EQ(v, V);
    for (int64_t i = 0; i < B; ++i)
      worst = std::max(worst, max_abs_diff(logits + i * l * V, ref.ptr() + (i * L + offset) * V, l * V));
    offset += l;
  };
  opts.on_stream_weights = [&](int, const float* w, int64_t rows, int64_t l, int64_t p) {
    ASSERT_EQ(rows, B);  // unguided: the image rows are the conditional rows
    ASSERT_EQ(p, P);
    for (int64_t i = 0; i < B; ++i)
      worst_w = std::max(worst_w, max_abs_diff(w + i * l * P, ref_w.ptr() + (i * L + w_offset) * P, l * P));
    w_offset += l;
  };
  const GeneratedImages out = pipe_->generate(req, opts);
  EXPECT_EQ(offset, L);
  EXPECT_EQ(w_offset, L);
  EXPECT_LT(worst, kLogitTol) << "max |logits - " << tag("logits_BLV") << "|";
  EXPECT_LT(worst_w, kWeightTol) << "max |w - " << tag("w_BLP") << "|";
  // One batched pass per scale over P copies of the image rows.
  for (size_t s = 0; s < out.counters.passes_per_scale.size(); ++s) {
    EXPECT_EQ(out.counters.passes_per_scale[s], 1);
    EXPECT_EQ(out.counters.rows_per_scale[s], P * B);
  }
}

// Only the random-adapter case records a generation.
using GoldenParScaleGeneration = GoldenParScale;

// The golden ParScale generation records no f_hat.
TEST_P(GoldenParScaleGeneration, Greedy) { expect_greedy_generation(*pipe_, *gc_, tag(""), /*check_fhat=*/false); }

const auto kSaln = ::testing::Values(param("saln", 2, "pth"), param("saln", 2, "safetensors"),
                                     param("saln", 3, "pth"), param("saln", 3, "safetensors"));
const auto kSalnCuda =
    ::testing::Values(param("saln", 2, "safetensors", "cuda"), param("saln", 3, "safetensors", "cuda"));
INSTANTIATE_TEST_SUITE_P(Saln, GoldenParScale, kSaln, param_name);
INSTANTIATE_TEST_SUITE_P(SalnCuda, GoldenParScale, kSalnCuda, param_name);
INSTANTIATE_TEST_SUITE_P(Saln, GoldenParScaleGeneration, kSaln, param_name);
INSTANTIATE_TEST_SUITE_P(SalnCuda, GoldenParScaleGeneration, kSalnCuda, param_name);
// The trained adapters of the built-in depth-4 model (.pth only: the built-in
// checkpoints ship as the official code writes them).
INSTANTIATE_TEST_SUITE_P(Fmnist, GoldenParScale,
                         ::testing::Values(param("fmnist-parscale", 1, "pth"), param("fmnist-parscale", 2, "pth"),
                                           param("fmnist-parscale", 4, "pth"), param("fmnist-parscale", 8, "pth")),
                         param_name);
INSTANTIATE_TEST_SUITE_P(FmnistCuda, GoldenParScale,
                         ::testing::Values(param("fmnist-parscale", 8, "pth", "cuda")), param_name);

}  // namespace
}  // namespace varps::testing
