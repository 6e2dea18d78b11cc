// Zero-shot editing against the official demo's masked inference
// (edit.safetensors of the tiny and small cases): the masks per scale, the
// guided logits, the edited token maps, f_hat and the image, with both
// checkpoint formats. Tolerances: docs/tolerances.md.
#include <gtest/gtest.h>

#include "cuda/cuda_available.hpp"
#include "golden/golden_case.hpp"
#include "varps/edit.hpp"
#include "varps/pipeline.hpp"

namespace varps::testing {
namespace {

using Param = CaseParam;

// One task of edit.json with its reference outputs.
struct EditTask {
  std::string name;
  EditBox box;
  bool inpainting = true;
  std::vector<int> labels;
  double cfg = 0;
};

class GoldenEdit : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    if (GetParam().device == "cuda") VARPS_SKIP_WITHOUT_CUDA();
    gc_ = std::make_unique<GoldenCase>(GetParam().case_name);
    edit_ = std::make_unique<Checkpoint>(Checkpoint::open(gc_->dir / "edit.safetensors"));
    const nlohmann::json j = nlohmann::json::parse(std::ifstream(gc_->dir / "edit.json"));
    for (const auto& t : j["tasks"]) {
      const auto b = t["box_y0x0y1x1"].get<std::vector<double>>();
      tasks_.push_back({t["task"].get<std::string>(), EditBox{b[0], b[1], b[2], b[3]}, t["inpainting"].get<bool>(),
                        t["label_B"].get<std::vector<int>>(), t["cfg"].get<double>()});
    }
    PipelineOptions opts;
    opts.threads = 2;
    opts.device = GetParam().device;
    pipe_ = std::make_unique<Pipeline>(Pipeline::from_files(gc_->dir / ("var." + GetParam().ext),
                                                            gc_->dir / ("vae." + GetParam().ext), opts));
  }

  std::vector<int32_t> i32(const std::string& n) const {
    const TensorI64 t = edit_->read_i64(n);
    return std::vector<int32_t>(t.data.begin(), t.data.end());
  }
  // The image to edit, per image: [b][scale][pn²].
  std::vector<TokenMaps> input_tokens() const {
    const auto pn = gc_->patch_nums();
    const int64_t B = gc_->batch();
    std::vector<TokenMaps> in(static_cast<size_t>(B), TokenMaps(pn.size()));
    for (size_t s = 0; s < pn.size(); ++s) {
      const auto all = i32("edit_input_idx_s" + std::to_string(s));
      const int64_t l = static_cast<int64_t>(pn[s]) * pn[s];
      for (int64_t b = 0; b < B; ++b) in[b][s].assign(all.begin() + b * l, all.begin() + (b + 1) * l);
    }
    return in;
  }
  std::vector<EditRequest> greedy_edits(const EditTask& t) const {
    const EditMask mask = box_mask(t.box, gc_->patch_nums().back(), !t.inpainting);
    const std::vector<TokenMaps> in = input_tokens();
    std::vector<EditRequest> edits;
    for (size_t b = 0; b < t.labels.size(); ++b)
      edits.push_back({{t.labels[b], 0, SamplingParams{t.cfg, 1, 0.0}}, in[b], mask});
    return edits;
  }

  std::unique_ptr<GoldenCase> gc_;
  std::unique_ptr<Checkpoint> edit_;
  std::vector<EditTask> tasks_;
  std::unique_ptr<Pipeline> pipe_;
};

TEST_P(GoldenEdit, TheCaseHasItsThreeTasks) {
  ASSERT_EQ(tasks_.size(), 3u);
  EXPECT_EQ(tasks_[0].name, "inpaint");
  EXPECT_EQ(tasks_[1].name, "outpaint");
  EXPECT_EQ(tasks_[2].name, "classedit");
}

// The box gives the demo's mask, and its resized, thresholded copies give the
// demo's kept positions at every scale.
TEST_P(GoldenEdit, MasksPerScaleAreTheDemos) {
  const auto pn = gc_->patch_nums();
  for (const EditTask& t : tasks_) {
    SCOPED_TRACE(t.name);
    const EditMask mask = box_mask(t.box, pn.back(), !t.inpainting);
    const Tensor ref = edit_->read_f32("edit_" + t.name + "_mask_hw");
    ASSERT_EQ(ref.data.size(), mask.keep.size());
    EXPECT_EQ(mask.keep, ref.data);
    const auto keep = keep_per_scale(mask, pn);
    ASSERT_EQ(keep.size(), pn.size());
    for (size_t s = 0; s < pn.size(); ++s) {
      const auto force = i32("edit_" + t.name + "_force_s" + std::to_string(s));  // [B, pn, pn]
      const size_t l = keep[s].size();
      ASSERT_EQ(force.size(), l * t.labels.size());
      for (size_t b = 0; b < t.labels.size(); ++b)
        EXPECT_EQ(std::vector<int32_t>(keep[s].begin(), keep[s].end()),
                  std::vector<int32_t>(force.begin() + b * l, force.begin() + (b + 1) * l))
            << "scale " << s << ", image " << b;
    }
  }
}

// The encoder turns the case's image into the tokens the demo edits.
TEST_P(GoldenEdit, TokenizeGivesTheImageToEdit) {
  const std::vector<TokenMaps> got = pipe_->tokenize(gc_->f32("enc_img_in"));
  EXPECT_EQ(got, input_tokens());
}

TEST_P(GoldenEdit, GreedyEditsMatchTheOfficial) {
  const auto pn = gc_->patch_nums();
  const std::vector<TokenMaps> in = input_tokens();
  for (const EditTask& t : tasks_) {
    SCOPED_TRACE(t.name);
    const std::string ref = "edit_" + t.name;
    std::vector<float> worst(pn.size(), 0.0f);
    GenerateOptions opts;
    opts.keep_f_hat = true;
    opts.on_logits = [&](int si, const float* logits, int64_t b, int64_t l, int64_t v) {
      const Tensor r = edit_->read_f32(ref + "_logits_s" + std::to_string(si));
      ASSERT_EQ(r.data.size(), static_cast<size_t>(b * l * v));
      worst[si] = max_abs_diff(logits, r.ptr(), r.data.size());
    };
    const GeneratedImages out = pipe_->edit(greedy_edits(t), opts);
    const auto keep = keep_per_scale(box_mask(t.box, pn.back(), !t.inpainting), pn);
    for (size_t s = 0; s < pn.size(); ++s) {
      EXPECT_LT(worst[s], guided_logit_tol(t.cfg)) << "logits of scale " << s;
      std::vector<int32_t> got;
      for (size_t b = 0; b < t.labels.size(); ++b) {
        got.insert(got.end(), out.tokens[b][s].begin(), out.tokens[b][s].end());
        for (size_t i = 0; i < keep[s].size(); ++i)
          if (keep[s][i]) {
            EXPECT_EQ(out.tokens[b][s][i], in[b][s][i]) << "kept token " << i << " of scale " << s;
          }
      }
      EXPECT_EQ(got, i32(ref + "_idx_s" + std::to_string(s))) << "tokens of scale " << s;
    }
    const Tensor fhat = edit_->read_f32(ref + "_fhat");
    EXPECT_LT(max_abs_diff(out.f_hat.ptr(), fhat.ptr(), fhat.data.size()), kFhatTol);
    const Tensor img = edit_->read_f32(ref + "_img");
    ASSERT_EQ(out.pixels.size(), img.data.size());
    EXPECT_LT(max_abs_diff(out.pixels.data(), img.ptr(), img.data.size()), kImageTol);
  }
}

// An edit's tokens and pixels do not depend on the other edits of its batch,
// with random sampling (top-k, top-p) and the three tasks mixed.
TEST_P(GoldenEdit, AnEditAloneAndAmongOthersIsBitIdentical) {
  std::vector<EditRequest> all;
  uint64_t seed = 11;
  for (const EditTask& t : tasks_)
    for (EditRequest e : greedy_edits(t)) {
      e.image.seed = seed++;
      e.image.sampling = SamplingParams{t.cfg, 5, 0.9};
      all.push_back(std::move(e));
    }
  const GeneratedImages together = pipe_->edit(all);
  const int64_t px = together.height * together.width * 3;
  for (size_t i = 0; i < all.size(); ++i) {
    SCOPED_TRACE("edit " + std::to_string(i));
    const GeneratedImages alone = pipe_->edit({all[i]});
    EXPECT_EQ(alone.tokens[0], together.tokens[i]);
    EXPECT_TRUE(std::equal(alone.pixels.begin(), alone.pixels.end(), together.pixels.begin() + i * px));
  }
  // The sequential schedule runs each edit alone: the same results.
  GenerateOptions seq;
  seq.schedule = Schedule::Sequential;
  const GeneratedImages one_by_one = pipe_->edit(all, seq);
  EXPECT_EQ(one_by_one.tokens, together.tokens);
  EXPECT_EQ(one_by_one.pixels, together.pixels);
}

INSTANTIATE_TEST_SUITE_P(Cases, GoldenEdit,
                         ::testing::Values(Param{"tiny", "pth"}, Param{"tiny", "safetensors"}, Param{"small", "pth"},
                                           Param{"small", "safetensors"}),
                         case_param_name);
// The same on the GPU in float32 (skipped without a GPU).
INSTANTIATE_TEST_SUITE_P(CasesCuda, GoldenEdit,
                         ::testing::Values(Param{"tiny", "safetensors", "cuda"}, Param{"small", "safetensors", "cuda"}),
                         case_param_name);

}  // namespace
}  // namespace varps::testing
