// Continuous batching at scale boundaries: cohorts that join while others
// are mid-way share backbone passes with them (rows of different scales in
// one pass, each cohort with its own KV cache), and every image is the one
// the same request alone gives, bit for bit.
#include <gtest/gtest.h>

#include <map>

#include "varps/adapter.hpp"
#include "varps/error.hpp"
#include "varps/pipeline.hpp"
#include "varps/rolling_batch.hpp"

namespace varps {
namespace {

// Unguided, guided with both filters, and unconditional: three row layouts
// and two sampling shapes in flight together.
std::vector<ImageRequest> cohort(int first_class, uint64_t seed, int images, int num_classes = 10) {
  std::vector<ImageRequest> r;
  for (int i = 0; i < images; ++i) {
    SamplingParams s;
    s.cfg = i % 3 == 0 ? 0.0 : 2.5;
    s.top_k = i % 2 ? 20 : 0;
    s.top_p = i % 2 ? 0.9 : 0.0;
    const int c = i % 3 == 2 ? num_classes : (first_class + i) % num_classes;
    r.push_back({c, seed + static_cast<uint64_t>(i), s});
  }
  return r;
}

// Each finished cohort's images against each request alone.
void expect_alone(const Pipeline& pipe, const std::vector<ImageRequest>& requests,
                  const RollingBatch::Finished& f) {
  ASSERT_EQ(f.images.count, static_cast<int64_t>(requests.size()));
  const size_t px = static_cast<size_t>(3 * f.images.height * f.images.width);
  for (size_t i = 0; i < requests.size(); ++i) {
    const GeneratedImages alone = pipe.generate({requests[i]});
    EXPECT_EQ(f.images.tokens[i], alone.tokens[0]) << "cohort " << f.cohort << " image " << i;
    const std::vector<float> mine(f.images.pixels.begin() + static_cast<std::ptrdiff_t>(i * px),
                                  f.images.pixels.begin() + static_cast<std::ptrdiff_t>((i + 1) * px));
    EXPECT_EQ(mine, alone.pixels) << "cohort " << f.cohort << " image " << i;
  }
}

// Three cohorts joining at steps 0, 1 and 3 of a K-scale model; `run` steps
// the batch to its end and returns the finished cohorts by id.
void run_staggered(const Pipeline& pipe) {
  const int K = pipe.var_config().num_scales();
  ASSERT_GE(K, 4);
  RollingBatch batch(pipe, 8);
  std::map<uint64_t, std::vector<ImageRequest>> asked;
  std::map<uint64_t, RollingBatch::Finished> got;
  const auto join = [&](std::vector<ImageRequest> r) { asked[batch.join(r)] = std::move(r); };
  const auto step = [&] {
    for (RollingBatch::Finished& f : batch.step()) got[f.cohort] = std::move(f);
  };
  join(cohort(1, 10, 2));
  step();
  join(cohort(4, 20, 3));
  step();
  step();
  join(cohort(0, 30, 1));
  while (!batch.empty()) step();

  // K passes for the first cohort, plus the steps after it finished for
  // the last: 3 + K, against 3K one cohort after another.
  EXPECT_EQ(batch.backbone_passes(), 3 + K);
  ASSERT_EQ(got.size(), 3u);
  for (const auto& [id, requests] : asked) {
    SCOPED_TRACE("cohort " + std::to_string(id));
    expect_alone(pipe, requests, got.at(id));
  }
  EXPECT_EQ(got.begin()->second.most_images, 6);  // at step 3 all three were in flight
}

TEST(RollingBatch, CohortsJoiningMidGenerationGetTheImagesTheyGetAlone) {
  const Pipeline pipe = Pipeline::from_preset("tiny");
  run_staggered(pipe);
}

TEST(RollingBatch, WithParScaleStreamsAndPrefixTokens) {
  Pipeline pipe = Pipeline::from_preset("tiny");
  pipe.attach_adapter(ParScaleAdapter::random_init(pipe.var_config(), 3, 2, 7));
  run_staggered(pipe);
}

TEST(RollingBatch, StatesOfFinishedCohortsServeLaterOnesOfTheirShape) {
  const Pipeline pipe = Pipeline::from_preset("tiny");
  RollingBatch batch(pipe, 4);
  for (uint64_t seed : {1u, 2u}) {  // the second cohort reuses the first's arrays and recordings
    const std::vector<ImageRequest> r = cohort(3, seed, 2);
    batch.join(r);
    std::vector<RollingBatch::Finished> done;
    while (!batch.empty())
      for (RollingBatch::Finished& f : batch.step()) done.push_back(std::move(f));
    ASSERT_EQ(done.size(), 1u);
    expect_alone(pipe, r, done[0]);
  }
}

// A cohort stopped between steps leaves the next pass and frees its room;
// the cohort beside it still gets the images it gets alone.
TEST(RollingBatch, ACohortThatLeavesMidWayTakesItsRowsAndNotTheOthersImages) {
  const Pipeline pipe = Pipeline::from_preset("tiny");
  const int K = pipe.var_config().num_scales();
  RollingBatch batch(pipe, 5);
  const std::vector<ImageRequest> stays = cohort(2, 40, 2);
  const uint64_t kept = batch.join(stays);
  const uint64_t gone = batch.join(cohort(5, 50, 3));
  batch.step();
  EXPECT_EQ(batch.free_images(), 0);
  batch.leave(gone);
  EXPECT_EQ(batch.free_images(), 3);
  EXPECT_EQ(batch.cohorts(), 1);
  EXPECT_THROW(batch.leave(gone), Error);
  std::vector<RollingBatch::Finished> done;
  while (!batch.empty())
    for (RollingBatch::Finished& f : batch.step()) done.push_back(std::move(f));
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].cohort, kept);
  EXPECT_EQ(done[0].most_images, 5);  // the first pass held both
  EXPECT_EQ(batch.backbone_passes(), K);
  expect_alone(pipe, stays, done[0]);
}

TEST(RollingBatch, RefusesWhatDoesNotFitOrIsOutOfRange) {
  const Pipeline pipe = Pipeline::from_preset("tiny");
  EXPECT_THROW(RollingBatch(pipe, 0), Error);
  RollingBatch batch(pipe, 3);
  batch.join(cohort(0, 1, 2));
  try {
    batch.join(cohort(0, 1, 2));
    FAIL() << "4 images joined a batch of 3";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("2 of 3 are in flight"), std::string::npos) << e.what();
  }
  EXPECT_THROW(batch.join({{pipe.var_config().num_classes + 1, 1, {}}}), Error);
  EXPECT_THROW(batch.join({}), Error);
  EXPECT_EQ(batch.images_in_flight(), 2);
  EXPECT_EQ(batch.free_images(), 1);
  batch.step();
  batch.clear();
  EXPECT_TRUE(batch.empty());
  EXPECT_TRUE(batch.step().empty());
}

}  // namespace
}  // namespace varps
