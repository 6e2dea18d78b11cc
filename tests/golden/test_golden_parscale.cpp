// The golden ParScale cases (saln with parscale_p2/p3 adapters): teacher
// forcing (logits and aggregation weights) and greedy generation, with both
// checkpoint formats. Tolerances: docs/tolerances.md.
#include <gtest/gtest.h>

#include "cuda/cuda_available.hpp"
#include "golden/golden_case.hpp"
#include "varps/adapter.hpp"
#include "varps/pipeline.hpp"

namespace varps::testing {
namespace {

constexpr float kWeightTol = 1e-5f;  // aggregation weights in [s/P, 1]

struct Param {
  int streams;
  std::string ext;
  std::string device = "cpu";
};

void PrintTo(const Param& p, std::ostream* os) { *os << "P=" << p.streams << " " << p.ext << " " << p.device; }

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
    gc_ = std::make_unique<GoldenCase>("saln");
    PipelineOptions opts;
    opts.threads = 2;
    opts.device = GetParam().device;
    pipe_ = std::make_unique<Pipeline>(
        Pipeline::from_files(gc_->dir / ("var." + GetParam().ext), gc_->dir / ("vae." + GetParam().ext), opts));
    adapter_ = ParScaleAdapter::load(gc_->dir / ("parscale_p" + std::to_string(GetParam().streams) + ".safetensors"));
    pipe_->attach_adapter(adapter_);
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

// The golden ParScale generation records no f_hat.
TEST_P(GoldenParScale, GreedyGeneration) { expect_greedy_generation(*pipe_, *gc_, tag(""), /*check_fhat=*/false); }

INSTANTIATE_TEST_SUITE_P(Saln, GoldenParScale,
                         ::testing::Values(Param{2, "pth"}, Param{2, "safetensors"}, Param{3, "pth"},
                                           Param{3, "safetensors"}),
                         param_name);
INSTANTIATE_TEST_SUITE_P(SalnCuda, GoldenParScale,
                         ::testing::Values(Param{2, "safetensors", "cuda"}, Param{3, "safetensors", "cuda"}),
                         param_name);

}  // namespace
}  // namespace varps::testing
