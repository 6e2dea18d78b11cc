// Parallel streams: one backbone pass per scale for all streams, and a
// stream's output independent of P, of its position and of its neighbours,
// bit for bit on the CPU.
#include <gtest/gtest.h>

#include <filesystem>

#include "varps/error.hpp"
#include "varps/pipeline.hpp"

namespace varps {
namespace {

const Pipeline& tiny() {
  static const Pipeline p = Pipeline::from_preset("tiny", PipelineOptions{2});
  return p;
}

// The golden `small` model: wider rows and more scales than `tiny`.
const Pipeline& small() {
  static const Pipeline p = [] {
    const auto dir = std::filesystem::path(VARPS_TEST_DATA) / "golden" / "small";
    return Pipeline::from_files(dir / "var.safetensors", dir / "vae.safetensors", PipelineOptions{2});
  }();
  return p;
}

// Neighbours with other classes, seeds and parameters, some unguided (which
// changes the row count and layout around the stream under test).
std::vector<ImageRequest> neighbours(int n, int num_classes) {
  std::vector<ImageRequest> out;
  for (int i = 0; i < n; ++i) {
    SamplingParams s;
    s.cfg = (i % 3 == 0) ? 0.0 : 1.0 + i;
    s.top_k = (i % 2) ? 0 : 5 + i;
    s.top_p = (i % 2) ? 0.9 : 0.0;
    s.temperature = 1.0 + 0.25 * (i % 3);
    out.push_back({(3 * i + 1) % (num_classes + 1), 1000u + i, s});
  }
  return out;
}

void expect_invariant(const Pipeline& pipe, const ImageRequest& probe) {
  const GeneratedImages alone = pipe.generate({probe});
  const size_t n = alone.pixels.size();
  for (int P : {2, 3, 5, 8}) {
    for (int pos : {0, P / 2, P - 1}) {
      std::vector<ImageRequest> req = neighbours(P - 1, pipe.var_config().num_classes);
      req.insert(req.begin() + pos, probe);
      const GeneratedImages all = pipe.generate(req);
      SCOPED_TRACE("P=" + std::to_string(P) + " position " + std::to_string(pos));
      EXPECT_EQ(all.tokens[pos], alone.tokens[0]);
      const std::vector<float> mine(all.pixels.begin() + pos * n, all.pixels.begin() + (pos + 1) * n);
      EXPECT_TRUE(mine == alone.pixels) << "pixels differ";
    }
  }
}

TEST(Streams, BatchInvariantBitForBitTiny) {
  expect_invariant(tiny(), {4, 77, SamplingParams{}});
  expect_invariant(tiny(), {2, 5, SamplingParams{0.0, 0, 0.0, 1.0}});
}

TEST(Streams, BatchInvariantBitForBitSmall) {
  expect_invariant(small(), {13, 3, SamplingParams{4.0, 50, 0.95, 1.0}});
}

TEST(Streams, OneBackbonePassPerScaleBatchedAndPSequential) {
  const auto req = expand_streams({1, 6}, 3, 10, SamplingParams{});
  const auto K = tiny().var_config().patch_nums.size();
  GenerateOptions batched;
  const GeneratedImages b = tiny().generate(req, batched);
  EXPECT_EQ(b.counters.passes_per_scale, std::vector<int64_t>(K, 1));
  EXPECT_EQ(b.counters.rows_per_scale, std::vector<int64_t>(K, 12));  // 6 streams x (cond + uncond)
  GenerateOptions seq;
  seq.schedule = Schedule::Sequential;
  const GeneratedImages s = tiny().generate(req, seq);
  EXPECT_EQ(s.counters.passes_per_scale, std::vector<int64_t>(K, 6));
  EXPECT_EQ(s.counters.rows_per_scale, std::vector<int64_t>(K, 12));
  // Same streams, same outputs, whichever the schedule.
  EXPECT_EQ(s.tokens, b.tokens);
  EXPECT_TRUE(s.pixels == b.pixels);
}

TEST(Streams, UnguidedStreamsSkipTheUnconditionalRow) {
  std::vector<ImageRequest> req = expand_streams({1}, 4, 0, SamplingParams{0.0, 0, 0.0, 1.0});
  EXPECT_EQ(tiny().rows_for(req), 4);
  req[2].sampling.cfg = 1.5;
  EXPECT_EQ(tiny().rows_for(req), 5);
  const GeneratedImages out = tiny().generate(req);
  EXPECT_EQ(out.counters.rows_per_scale.front(), 5);
}

TEST(Streams, ExpandStreamsGivesConsecutiveSeedsPerClass) {
  const auto req = expand_streams({7, 2}, 3, 100, SamplingParams{1.5, 10, 0.5, 1.0});
  ASSERT_EQ(req.size(), 6u);
  for (size_t i = 0; i < req.size(); ++i) {
    EXPECT_EQ(req[i].class_id, i < 3 ? 7 : 2);
    EXPECT_EQ(req[i].seed, 100u + i);
    EXPECT_EQ(req[i].sampling.cfg, 1.5);
  }
  EXPECT_THROW(expand_streams({1}, 0, 0, SamplingParams{}), Error);
}

TEST(Streams, SharedSeedStreamsAreIdentical) {
  std::vector<ImageRequest> req(4, ImageRequest{3, 9, SamplingParams{}});
  const GeneratedImages out = tiny().generate(req);
  const size_t n = out.pixels.size() / 4;
  for (int p = 1; p < 4; ++p) {
    EXPECT_EQ(out.tokens[p], out.tokens[0]);
    EXPECT_TRUE(std::equal(out.pixels.begin() + p * n, out.pixels.begin() + (p + 1) * n, out.pixels.begin()));
  }
}

TEST(Streams, MemoryPlanGrowsPerRowWhenBatched) {
  const auto one = expand_streams({1}, 1, 0, SamplingParams{});
  const auto four = expand_streams({1}, 4, 0, SamplingParams{});
  const MemoryPlan p1 = tiny().plan_memory(one), p4 = tiny().plan_memory(four);
  const auto& c = tiny().var_config();
  const uint64_t kv_per_row = 2ull * c.depth * c.total_tokens() * c.embed_dim * sizeof(float);
  EXPECT_EQ(p1.kv_cache, 2 * kv_per_row);  // cond + uncond
  EXPECT_EQ(p4.kv_cache, 8 * kv_per_row);
  EXPECT_EQ(p1.weights, p4.weights);
  EXPECT_GT(p1.weights, 0u);
  EXPECT_GT(p4.activations, p1.activations);
  const MemoryPlan s4 = tiny().plan_memory(four, Schedule::Sequential);
  EXPECT_EQ(s4.kv_cache, p1.kv_cache);
  EXPECT_EQ(s4.activations, p1.activations);
}

TEST(Streams, InvalidSamplingParametersAreRefused) {
  EXPECT_THROW(tiny().generate({{1, 0, SamplingParams{-1.0, 0, 0.0, 1.0}}}), Error);
  EXPECT_THROW(tiny().generate({{1, 0, SamplingParams{1.0, -1, 0.0, 1.0}}}), Error);
  EXPECT_THROW(tiny().generate({{1, 0, SamplingParams{1.0, 0, 1.5, 1.0}}}), Error);
  EXPECT_THROW(tiny().generate({{1, 0, SamplingParams{1.0, 0, 0.5, 0.0}}}), Error);
}

}  // namespace
}  // namespace varps
