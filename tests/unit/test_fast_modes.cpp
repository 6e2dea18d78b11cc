// The fast modes do what they say on the tiny model: the rows and tokens
// they skip are really skipped (counted where the engine runs them), the
// refiner takes over at its scale, and with nothing skipped each mode is
// the exact path bit for bit.
#include <gtest/gtest.h>

#include "model/token_pruning.hpp"
#include "varps/error.hpp"
#include "varps/pipeline.hpp"
#include "varps/rolling_batch.hpp"

namespace varps {
namespace {

const Pipeline& tiny() {
  static const Pipeline p = Pipeline::from_preset("tiny", PipelineOptions{2});
  return p;
}

// Two guided images and one without guidance: N = 5 rows, B = 3.
std::vector<ImageRequest> requests() {
  return {{3, 11, SamplingParams{4.0, 900, 0.95}}, {7, 42, SamplingParams{2.0, 20, 0.9}},
          {1, 5, SamplingParams{0.0, 0, 0.0}}};
}

GeneratedImages run(const Pipeline& p, const FastModes& fast) {
  GenerateOptions o;
  o.fast = fast;
  return p.generate(requests(), o);
}

// Scales 0..n-1 of every image agree.
void expect_same_first_scales(const GeneratedImages& a, const GeneratedImages& b, int n) {
  ASSERT_EQ(a.tokens.size(), b.tokens.size());
  for (size_t i = 0; i < a.tokens.size(); ++i)
    for (int s = 0; s < n; ++s) EXPECT_EQ(a.tokens[i][s], b.tokens[i][s]) << "image " << i << " scale " << s + 1;
}

const std::vector<int64_t> kTokens = {1, 4, 9, 16};  // the tiny model's scales

TEST(FastModes, OffIsTheExactPath) {
  const GeneratedImages exact = tiny().generate(requests());
  const GeneratedImages off = run(tiny(), FastModes{});
  EXPECT_EQ(off.tokens, exact.tokens);
  EXPECT_EQ(off.pixels, exact.pixels);
  EXPECT_EQ(exact.counters.tokens_per_scale, (std::vector<int64_t>{5, 20, 45, 80}));
  EXPECT_EQ(exact.counters.refiner_passes_per_scale, (std::vector<int64_t>{0, 0, 0, 0}));
}

TEST(FastModes, GuidanceUntilTheLastScaleIsTheExactPath) {
  FastModes f;
  f.cfg_until_scale = 4;
  EXPECT_EQ(run(tiny(), f).tokens, tiny().generate(requests()).tokens);
}

TEST(FastModes, CfgUntilScaleDropsTheUnconditionalRowsAfterIt) {
  const GeneratedImages exact = tiny().generate(requests());
  FastModes f;
  f.cfg_until_scale = 2;
  const GeneratedImages g = run(tiny(), f);
  EXPECT_EQ(g.counters.rows_per_scale, (std::vector<int64_t>{5, 5, 3, 3}));
  EXPECT_EQ(g.counters.tokens_per_scale, (std::vector<int64_t>{5, 20, 27, 48}));
  expect_same_first_scales(g, exact, 2);
  // The image without guidance never had an unconditional row: it is the exact one.
  EXPECT_EQ(g.tokens[2], exact.tokens[2]);
  EXPECT_NE(g.tokens[0], exact.tokens[0]) << "the last scales sampled guided logits";
}

TEST(FastModes, PruningSkipsTheTokensItLeavesOut) {
  const GeneratedImages exact = tiny().generate(requests());
  FastModes f;
  f.prune = 0.5;
  f.prune_scales = 2;
  const GeneratedImages g = run(tiny(), f);
  // Scales 3 and 4 run 9 − 4 = 5 and 16 − 8 = 8 tokens of each of the 5 rows.
  EXPECT_EQ(g.counters.tokens_per_scale, (std::vector<int64_t>{5, 20, 25, 40}));
  EXPECT_EQ(kept_tokens(9, 0.5), 5);
  expect_same_first_scales(g, exact, 2);
  EXPECT_NE(g.tokens, exact.tokens);
  // Every position of the pruned scales is sampled from restored logits.
  for (const TokenMaps& t : g.tokens) EXPECT_EQ(t[3].size(), 16u);
}

TEST(FastModes, PruningNothingIsTheExactPath) {
  // ⌊9·0.01⌋ = ⌊16·0.01⌋ = 0: every token kept, through the pruned path.
  FastModes f;
  f.prune = 0.01;
  f.prune_scales = 3;
  const GeneratedImages g = run(tiny(), f);
  const GeneratedImages exact = tiny().generate(requests());
  EXPECT_EQ(g.counters.tokens_per_scale, exact.counters.tokens_per_scale);
  EXPECT_EQ(g.tokens, exact.tokens);
  EXPECT_EQ(g.pixels, exact.pixels);
}

TEST(FastModes, PivotalTokensAreTheFarthestFromTheMean) {
  // Four tokens of width 2; the mean is (1, 0).
  const std::vector<float> x = {1, 0, 4, 0, 1, 0, -2, 0};
  EXPECT_EQ(pivotal_tokens(x.data(), 4, 2, 2), (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(pivotal_tokens(x.data(), 4, 2, 3), (std::vector<int64_t>{0, 1, 3})) << "ties go to the earlier position";
  EXPECT_EQ(kept_tokens(16, 0.5), 8);
  EXPECT_EQ(kept_tokens(1, 0.99), 1);
}

TEST(FastModes, APrunedScaleIsRestoredFromThePreviousOne) {
  // One row, C = 1: a 2x2 scale keeps 1 of 4 tokens; the previous 1x1 scale held 7.
  std::vector<float> x = {0, 0, 5, 0};
  const PrunedScale p(x.data(), 1, 4, 1, 1);
  ASSERT_EQ(p.kept(), (std::vector<int64_t>{2}));
  EXPECT_EQ(x[0], 5.0f) << "compacted in place";
  const float h = 3.0f, prev = 7.0f;
  std::vector<float> full(4);
  p.restore(&h, &prev, 1, 2, full.data());
  EXPECT_EQ(full, (std::vector<float>{7, 7, 3, 7}));
}

TEST(FastModes, TheRefinerDrawsFromItsScale) {
  Pipeline p = Pipeline::from_preset("tiny", PipelineOptions{2});
  p.attach_refiner_preset("tiny", 7);  // other weights than the model's
  FastModes f;
  f.refine_from_scale = 3;
  const GeneratedImages g = run(p, f);
  EXPECT_EQ(g.counters.passes_per_scale, (std::vector<int64_t>{1, 1, 0, 0}));
  EXPECT_EQ(g.counters.refiner_passes_per_scale, (std::vector<int64_t>{1, 1, 1, 1}));
  EXPECT_EQ(g.counters.refiner_tokens_per_scale, (std::vector<int64_t>{5, 20, 45, 80}));
  const GeneratedImages exact = p.generate(requests());
  expect_same_first_scales(g, exact, 2);
  EXPECT_NE(g.tokens, exact.tokens) << "a refiner of other weights drew the same tokens";
}

TEST(FastModes, ARefinerOfTheSameWeightsIsTheExactPath) {
  // Its cache is filled by its own passes over the drafted scales, so with
  // the model's own weights it continues exactly as the model would.
  Pipeline p = Pipeline::from_preset("tiny", PipelineOptions{2});
  p.attach_refiner_preset("tiny", 0);
  FastModes f;
  f.refine_from_scale = 2;
  f.cfg_until_scale = 3;
  f.prune = 0.5;
  FastModes g = f;
  g.refine_from_scale = 0;
  EXPECT_EQ(run(p, f).tokens, run(p, g).tokens);
}

TEST(FastModes, ARollingBatchGivesGeneratesImages) {
  FastModes f;
  f.cfg_until_scale = 2;
  f.prune = 0.4;
  RollingBatch batch(tiny(), 8, f);
  batch.join({requests()[0]});
  batch.step();
  batch.join({requests()[1], requests()[2]});
  std::vector<RollingBatch::Finished> done;
  while (!batch.empty())
    for (auto& d : batch.step()) done.push_back(std::move(d));
  ASSERT_EQ(done.size(), 2u);
  const GeneratedImages alone = run(tiny(), f);
  EXPECT_EQ(done[0].images.tokens[0], alone.tokens[0]);
  EXPECT_EQ(done[1].images.tokens[0], alone.tokens[1]);
  EXPECT_EQ(done[1].images.tokens[1], alone.tokens[2]);
}

TEST(FastModes, SettingsOutsideTheModelAreRefused) {
  const auto refused = [](FastModes f, const std::string& needle) {
    try {
      run(tiny(), f);
      ADD_FAILURE() << "accepted " << describe(f);
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  refused({5, 0.0, 2, 0}, "cfg-until-scale 5 is out of range: this model has 4 scales");
  refused({0, 1.0, 2, 0}, "prune");
  refused({0, 0.5, 4, 0}, "prune-scales 4");
  refused({0, 0.0, 2, 1}, "refine-from-scale 1 is out of range");
  refused({0, 0.0, 2, 3}, "needs a refiner model");
  Pipeline p = Pipeline::from_preset("tiny", PipelineOptions{2});
  EXPECT_THROW(p.attach_refiner_preset("d16"), Error);  // other scales and vocabulary
  EXPECT_FALSE(p.has_refiner());
  EXPECT_EQ(describe(FastModes{}), "exact");
  EXPECT_EQ(describe(FastModes{3, 0.5, 2, 9}), "cfg until scale 3, prune 0.5 at the last 2 scales, refiner from scale 9");
}

}  // namespace
}  // namespace varps
