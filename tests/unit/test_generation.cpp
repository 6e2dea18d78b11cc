// Properties of generation on the built-in tiny model (random weights).
#include <gtest/gtest.h>

#include "varps/error.hpp"
#include "varps/pipeline.hpp"

namespace varps {
namespace {

const Pipeline& tiny() {
  static const Pipeline p = Pipeline::from_preset("tiny", PipelineOptions{2});
  return p;
}

TEST(Generation, AnImageDoesNotDependOnItsBatch) {
  const ImageRequest a{3, 11, SamplingParams{}};
  const ImageRequest b{7, 42, SamplingParams{2.0, 20, 0.9}};
  const GeneratedImages alone = tiny().generate({b});
  const GeneratedImages batch = tiny().generate({a, b, a});
  EXPECT_EQ(batch.tokens[1], alone.tokens[0]);
  const size_t n = alone.pixels.size();
  ASSERT_EQ(batch.pixels.size(), 3 * n);
  EXPECT_EQ(std::vector<float>(batch.pixels.begin() + n, batch.pixels.begin() + 2 * n), alone.pixels);
  EXPECT_EQ(batch.tokens[0], batch.tokens[2]);
}

// With bf16 and int8 products too (a row's sum does not depend on the rows
// beside it), whichever the processor's instructions.
TEST(Generation, AReducedPrecisionImageDoesNotDependOnItsBatch) {
  for (const std::string precision : {"bf16", "int8"}) {
    SCOPED_TRACE(precision);
    PipelineOptions opts{2};
    opts.precision = precision;
    const Pipeline reduced = Pipeline::from_preset("tiny", opts);
    const ImageRequest a{3, 11, SamplingParams{}};
    const ImageRequest b{7, 42, SamplingParams{2.0, 20, 0.9}};
    const GeneratedImages alone = reduced.generate({b});
    const GeneratedImages batch = reduced.generate({a, b, a, a, b, a, a});
    EXPECT_EQ(batch.tokens[1], alone.tokens[0]);
    EXPECT_EQ(batch.tokens[4], alone.tokens[0]);
    const size_t n = alone.pixels.size();
    EXPECT_EQ(std::vector<float>(batch.pixels.begin() + n, batch.pixels.begin() + 2 * n), alone.pixels);
    // The tokens may well agree with float32's; the logits may not.
    auto logits_of = [&](const Pipeline& p) {
      std::vector<float> all;
      GenerateOptions o;
      o.decode = false;
      o.on_logits = [&](int, const float* l, int64_t rows, int64_t len, int64_t v) {
        all.insert(all.end(), l, l + rows * len * v);
      };
      p.generate({b}, o);
      return all;
    };
    EXPECT_NE(logits_of(reduced), logits_of(tiny())) << precision << " gave the float32 logits";
  }
}

TEST(Generation, SeedChangesTheSampleAndRepeatsExactly) {
  const GeneratedImages x = tiny().generate({{3, 1, SamplingParams{}}});
  const GeneratedImages y = tiny().generate({{3, 1, SamplingParams{}}});
  const GeneratedImages z = tiny().generate({{3, 2, SamplingParams{}}});
  EXPECT_EQ(x.tokens, y.tokens);
  EXPECT_EQ(x.pixels, y.pixels);
  EXPECT_NE(x.tokens, z.tokens);
}

// Without guidance the unconditional rows are skipped; the result must be the
// same as computing them and weighting them by zero.
TEST(Generation, UnguidedImagesMatchInsideAGuidedBatch) {
  const ImageRequest plain{5, 9, SamplingParams{0.0, 0, 0.0}};
  const ImageRequest guided{2, 4, SamplingParams{3.0, 10, 0.9}};
  const GeneratedImages alone = tiny().generate({plain});
  const GeneratedImages mixed = tiny().generate({guided, plain});
  EXPECT_EQ(mixed.tokens[1], alone.tokens[0]);
}

TEST(Generation, ShapesFollowThePatchNums) {
  const GeneratedImages out = tiny().generate({{1, 0, SamplingParams{}}});
  const auto& pn = tiny().var_config().patch_nums;
  ASSERT_EQ(out.tokens[0].size(), pn.size());
  for (size_t s = 0; s < pn.size(); ++s) {
    EXPECT_EQ(out.tokens[0][s].size(), static_cast<size_t>(pn[s] * pn[s]));
    for (int32_t t : out.tokens[0][s]) {
      EXPECT_GE(t, 0);
      EXPECT_LT(t, tiny().var_config().vocab_size);
    }
  }
  EXPECT_EQ(out.height, pn.back() * tiny().vae_config().downsample());
  EXPECT_EQ(out.timings.transformer_ms.size(), pn.size());
  for (float v : out.pixels) {
    EXPECT_GE(v, 0.0f);
    EXPECT_LE(v, 1.0f);
  }
}

// The stages partition the work clock's span, which lies inside the request.
TEST(Generation, StageTimesAddUpWithinTheRequest) {
  const GeneratedImages out = tiny().generate({{1, 0, SamplingParams{}}, {2, 1, SamplingParams{}}});
  const StageTimings& t = out.timings;
  for (double ms : t.transformer_ms) EXPECT_GT(ms, 0.0);
  EXPECT_GT(t.decode_ms, 0.0);
  EXPECT_GE(t.sampling_ms, 0.0);
  EXPECT_GE(t.residual_ms, 0.0);
  EXPECT_LE(t.stages_ms(), t.total_ms * (1 + 1e-9));
  EXPECT_GT(t.stages_ms(), 0.5 * t.total_ms) << "the stages miss most of the request";
}

TEST(Generation, RejectsAnUnknownClass) {
  const int n = tiny().var_config().num_classes;
  EXPECT_THROW(tiny().generate({{n + 1, 0, SamplingParams{}}}), Error);
  EXPECT_THROW(tiny().generate({{-1, 0, SamplingParams{}}}), Error);
  EXPECT_NO_THROW(tiny().generate({{n, 0, SamplingParams{}}}));  // unconditional
  EXPECT_THROW(tiny().generate({}), Error);
}

TEST(Generation, RefusesTokenMapsOutsideTheCodebook) {
  const auto& pn = tiny().var_config().patch_nums;
  std::vector<std::vector<int32_t>> maps;
  for (int p : pn) maps.emplace_back(static_cast<size_t>(p * p), 0);
  maps[2][4] = tiny().var_config().vocab_size;  // one past the end
  GenerateOptions opts;
  opts.forced_tokens = &maps;
  EXPECT_THROW(tiny().generate({{1, 0, SamplingParams{}}}, opts), Error);
  EXPECT_THROW(tiny().tokens_to_f_hats(maps, 1, pn), Error);
  maps[2][4] = 0;
  maps[3].pop_back();  // wrong size
  EXPECT_THROW(tiny().tokens_to_f_hats(maps, 1, pn), Error);
  maps[3].push_back(0);
  EXPECT_NO_THROW(tiny().tokens_to_f_hats(maps, 1, pn));
}

}  // namespace
}  // namespace varps
