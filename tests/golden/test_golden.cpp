// Every shown golden case, stage by stage, with both checkpoint formats.
// Tolerances and their reasons: docs/tolerances.md.
#include <gtest/gtest.h>

#include "cuda/cuda_available.hpp"
#include "golden/golden_case.hpp"
#include "varps/pipeline.hpp"

namespace varps::testing {
namespace {

// docs/tolerances.md; the shared ones are in golden_case.hpp.
constexpr float kLatentTol = 1e-4f;  // encoder output, relative to its largest value

using Param = CaseParam;

class Golden : public ::testing::TestWithParam<Param> {
 protected:
  static std::map<std::string, std::unique_ptr<Pipeline>>& cache() {
    static std::map<std::string, std::unique_ptr<Pipeline>> c;
    return c;
  }
  void SetUp() override {
    if (GetParam().device == "cuda") VARPS_SKIP_WITHOUT_CUDA();
    gc_ = std::make_unique<GoldenCase>(GetParam().case_name);
    const std::string key = GetParam().case_name + GetParam().ext + GetParam().device;
    auto& c = cache();
    if (!c.count(key)) {
      PipelineOptions opts;
      opts.threads = 2;
      opts.device = GetParam().device;
      c[key] = std::make_unique<Pipeline>(Pipeline::from_files(gc_->checkpoint("var", GetParam().ext),
                                                               gc_->checkpoint("vae", GetParam().ext), opts));
    }
    pipe_ = c[key].get();
  }
  std::unique_ptr<GoldenCase> gc_;
  const Pipeline* pipe_ = nullptr;
};

TEST_P(Golden, InfersTheCaseConfiguration) {
  const auto& v = pipe_->var_config();
  const auto& j = gc_->config["var"];
  EXPECT_EQ(v.depth, j["depth"].get<int>());
  EXPECT_EQ(v.embed_dim, j["embed_dim"].get<int>());
  EXPECT_EQ(v.num_heads, j["num_heads"].get<int>());
  EXPECT_EQ(v.head_dim, j["head_dim"].get<int>());
  EXPECT_EQ(v.mlp_hidden, j["mlp_hidden"].get<int>());
  EXPECT_EQ(v.num_classes, j["num_classes"].get<int>());
  EXPECT_EQ(v.vocab_size, j["vocab_size"].get<int>());
  EXPECT_EQ(v.cvae, j["Cvae"].get<int>());
  EXPECT_EQ(v.patch_nums, gc_->patch_nums());
  EXPECT_EQ(v.shared_aln, j["shared_aln"].get<bool>());
  const auto& a = pipe_->vae_config();
  const auto& k = gc_->config["vqvae"];
  EXPECT_EQ(a.ch, k["ch"].get<int>());
  EXPECT_EQ(a.ch_mult, k["ch_mult"].get<std::vector<int>>());
  EXPECT_EQ(a.encoder_res_blocks, k["num_res_blocks"].get<int>());
  EXPECT_EQ(a.decoder_res_blocks, k["num_res_blocks"].get<int>() + 1);
  EXPECT_EQ(a.num_phi, k["share_quant_resi"].get<int>());
  EXPECT_EQ(a.vocab_size, k["vocab_size"].get<int>());
}

// Teacher forcing through the cached scale-by-scale path gives the
// reference's masked whole-sequence logits.
TEST_P(Golden, TeacherForcedLogits) {
  const auto pn = gc_->patch_nums();
  const int64_t B = gc_->batch();
  const Tensor ref = gc_->f32("logits_BLV");  // [B, L, V]
  const int64_t L = ref.dim(1), V = ref.dim(2);
  const std::vector<ImageRequest> req = gc_->greedy_requests();
  const auto gt = gc_->token_maps("gt_idx_s");
  GenerateOptions opts;
  opts.forced_tokens = &gt;
  opts.decode = false;
  float worst = 0.0f;
  int64_t offset = 0;
  opts.on_logits = [&](int si, const float* logits, int64_t b, int64_t l, int64_t v) {
    ASSERT_EQ(b, B);
    ASSERT_EQ(v, V);
    for (int64_t i = 0; i < B; ++i)
      worst = std::max(worst, max_abs_diff(logits + i * l * V, ref.ptr() + (i * L + offset) * V, l * V));
    offset += l;
  };
  pipe_->generate(req, opts);
  EXPECT_EQ(offset, L);
  EXPECT_LT(worst, kLogitTol) << "max |logits - logits_BLV|";
}

TEST_P(Golden, FhatPerScale) {
  const auto pn = gc_->patch_nums();
  const auto f_hats = pipe_->tokens_to_f_hats(gc_->token_maps("gt_idx_s"), gc_->batch(), pn);
  for (size_t s = 0; s < pn.size(); ++s) {
    const Tensor ref = gc_->f32("fhat_s" + std::to_string(s));
    ASSERT_EQ(f_hats[s].shape, ref.shape);
    EXPECT_LT(max_abs_diff(f_hats[s].ptr(), ref.ptr(), ref.data.size()), kFhatTol) << "scale " << s;
  }
}

TEST_P(Golden, DecodedImage) {
  const auto pn = gc_->patch_nums();
  const Tensor f_hat = gc_->f32("fhat_s" + std::to_string(pn.size() - 1));
  const Tensor img = pipe_->decode(f_hat);
  const Tensor ref = gc_->f32("dec_img");
  ASSERT_EQ(img.shape, ref.shape);
  EXPECT_LT(max_abs_diff(img.ptr(), ref.ptr(), ref.data.size()), kImageTol);
}

TEST_P(Golden, GreedyGeneration) { expect_greedy_generation(*pipe_, *gc_, "", /*check_fhat=*/true); }

TEST_P(Golden, EncoderTokensAndReconstruction) {
  const auto pn = gc_->patch_nums();
  const Tensor in = gc_->f32("enc_img_in");
  const Tensor f = pipe_->encode(in);
  const Tensor ref_f = gc_->f32("enc_f");
  ASSERT_EQ(f.shape, ref_f.shape);
  EXPECT_LT(max_abs_diff(f.ptr(), ref_f.ptr(), f.data.size()), kLatentTol * std::max(1.0f, max_abs(ref_f.ptr(), ref_f.data.size())));
  Tensor f_hat;
  const auto idx = pipe_->quantize(f, pn, &f_hat);
  for (size_t s = 0; s < pn.size(); ++s) EXPECT_EQ(idx[s], gc_->i32("enc_idx_s" + std::to_string(s))) << "scale " << s;
  const Tensor rec = pipe_->decode(f_hat);
  const Tensor ref = gc_->f32("enc_rec_img");
  EXPECT_LT(max_abs_diff(rec.ptr(), ref.ptr(), ref.data.size()), kImageTol);
}

INSTANTIATE_TEST_SUITE_P(Cases, Golden,
                         ::testing::Values(Param{"tiny", "pth"}, Param{"tiny", "safetensors"},
                                           Param{"small", "pth"}, Param{"small", "safetensors"},
                                           Param{"saln", "pth"}, Param{"saln", "safetensors"},
                                           Param{"fmnist", "pth"}),
                         case_param_name);
// The same cases on the GPU in float32, with the same tolerances and greedy
// tokens exactly equal (skipped without a GPU).
INSTANTIATE_TEST_SUITE_P(CasesCuda, Golden,
                         ::testing::Values(Param{"tiny", "safetensors", "cuda"}, Param{"small", "safetensors", "cuda"},
                                           Param{"saln", "safetensors", "cuda"}, Param{"fmnist", "pth", "cuda"}),
                         case_param_name);

}  // namespace
}  // namespace varps::testing
