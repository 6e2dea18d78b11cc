// The arrays of a request are allocated once and reused by the next request
// of the same shape (and its recordings with them): nothing of one request
// may leak into the next, whatever came before.
#include <gtest/gtest.h>

#include "varps/adapter.hpp"
#include "varps/pipeline.hpp"

namespace varps {
namespace {

Pipeline tiny() { return Pipeline::from_preset("tiny", PipelineOptions{2}); }

void expect_same(const GeneratedImages& a, const GeneratedImages& b) {
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.pixels, b.pixels);
}

TEST(GenerationState, ARequestDoesNotDependOnThoseBeforeIt) {
  const std::vector<ImageRequest> a = {{3, 11, SamplingParams{2.0, 20, 0.9}}, {5, 12, SamplingParams{0.0, 0, 0.0}}};
  const std::vector<ImageRequest> b = {{7, 40, SamplingParams{1.5, 0, 0.8}}, {1, 41, SamplingParams{0.0, 5, 0.0}}};
  const std::vector<ImageRequest> other_shape = {{2, 9, SamplingParams{}}};
  const GeneratedImages a_fresh = tiny().generate(a), b_fresh = tiny().generate(b);
  ASSERT_NE(a_fresh.tokens, b_fresh.tokens);

  const Pipeline pipe = tiny();
  expect_same(pipe.generate(a), a_fresh);
  expect_same(pipe.generate(b), b_fresh);  // same shape: a's arrays, b's contents
  pipe.generate(other_shape);
  expect_same(pipe.generate(a), a_fresh);
  pipe.release_cached_memory();
  expect_same(pipe.generate(b), b_fresh);
  EXPECT_EQ(pipe.generate(b).counters.replayed_steps, 0) << "the CPU runs every step as it is";
}

// From the second request of a shape on, every scale's steps (transformer,
// sampling, residual) and every decoder pass run under the rules of a
// recording, which the CPU enforces (RecordedSteps): none allocates,
// transfers or synchronises, so on CUDA each can be captured as a graph. Guided and unguided images, filters
// on and off, with a ParScale adapter and without.
TEST(GenerationState, EveryScaleStepKeepsTheRulesOfARecording) {
  const std::vector<ImageRequest> mixed = {{3, 11, SamplingParams{2.0, 20, 0.9}},
                                           {5, 12, SamplingParams{0.0, 0, 0.0, 1.3}}};
  const std::vector<ImageRequest> greedy = {{6, 13, SamplingParams{0.0, 1, 0.0}}};
  const std::vector<ImageRequest> unfiltered = {{6, 13, SamplingParams{1.0, 0, 0.0}}};
  Pipeline pipe = tiny();
  for (const auto* req : {&mixed, &greedy, &unfiltered}) {
    const GeneratedImages first = pipe.generate(*req);
    GeneratedImages again;
    ASSERT_NO_THROW(again = pipe.generate(*req));
    expect_same(again, first);
  }
  pipe.attach_adapter(ParScaleAdapter::random_init(pipe.var_config(), 2, 3, 1));
  const GeneratedImages first = pipe.generate(mixed);
  GeneratedImages again;
  ASSERT_NO_THROW(again = pipe.generate(mixed));
  expect_same(again, first);
}

TEST(GenerationState, FollowsTheAttachedAdapter) {
  const auto req = expand_streams({4}, 2, 7, SamplingParams{});
  Pipeline pipe = tiny();
  const GeneratedImages plain = pipe.generate(req);
  const ParScaleAdapter two = ParScaleAdapter::random_init(pipe.var_config(), 2, 3, 1);
  const ParScaleAdapter three = ParScaleAdapter::random_init(pipe.var_config(), 3, 2, 2);

  Pipeline fresh2 = tiny(), fresh3 = tiny();
  fresh2.attach_adapter(two);
  fresh3.attach_adapter(three);
  const GeneratedImages with2 = fresh2.generate(req), with3 = fresh3.generate(req);
  ASSERT_NE(with2.tokens, plain.tokens);

  pipe.attach_adapter(two);
  expect_same(pipe.generate(req), with2);
  pipe.attach_adapter(three);
  expect_same(pipe.generate(req), with3);
  pipe.detach_adapter();
  expect_same(pipe.generate(req), plain);
}

}  // namespace
}  // namespace varps
