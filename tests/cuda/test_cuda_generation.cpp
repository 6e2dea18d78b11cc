// Whole generations on the GPU: batch
// invariance (an image's tokens and pixels do not depend on what runs beside
// it, nor on P), and sampled tokens against the CPU's. Skipped without a GPU.
#include <gtest/gtest.h>


#include "cuda/cuda_available.hpp"
#include "varps/pipeline.hpp"

namespace varps::testing {
namespace {

class CudaGeneration : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { VARPS_SKIP_WITHOUT_CUDA(); }
  static Pipeline pipeline(const std::string& device, const std::string& precision, bool graphs = true) {
    PipelineOptions opts;
    opts.device = device;
    opts.precision = precision;
    opts.threads = 2;
    opts.cuda_graphs = graphs;
    return Pipeline::from_preset("tiny", opts);
  }
};

// An image's tokens and pixels are bit-identical alone and among 1..8
// neighbours (guided and unguided, other classes and seeds): nothing in the
// device path depends on the batch, the products included.
TEST_P(CudaGeneration, BatchInvariant) {
  const Pipeline pipe = pipeline("cuda", GetParam());
  const ImageRequest me{3, 42, SamplingParams{}};
  const GeneratedImages alone = pipe.generate({me});
  for (int neighbours : {1, 3, 7}) {
    SCOPED_TRACE(neighbours);
    std::vector<ImageRequest> req;
    for (int i = 0; i < neighbours; ++i)
      req.push_back({i % 10, static_cast<uint64_t>(100 + i), SamplingParams{i % 2 ? 0.0 : 2.5, 900, 0.95}});
    req.insert(req.begin() + neighbours / 2, me);
    const GeneratedImages all = pipe.generate(req);
    const size_t pos = static_cast<size_t>(neighbours / 2);
    EXPECT_EQ(all.tokens[pos], alone.tokens[0]);
    const size_t px = alone.pixels.size();
    EXPECT_TRUE(std::equal(alone.pixels.begin(), alone.pixels.end(), all.pixels.begin() + pos * px));
  }
}

// The P streams of one class (seeds seed..seed+P-1): stream p's tokens do
// not depend on P.
TEST_P(CudaGeneration, StreamTokensIndependentOfP) {
  const Pipeline pipe = pipeline("cuda", GetParam());
  const GeneratedImages p8 = pipe.generate(expand_streams({5}, 8, 11, SamplingParams{}));
  for (int P : {1, 2, 4}) {
    const GeneratedImages fewer = pipe.generate(expand_streams({5}, P, 11, SamplingParams{}));
    for (int p = 0; p < P; ++p) EXPECT_EQ(fewer.tokens[p], p8.tokens[p]) << "stream " << p << " at P=" << P;
  }
}

// The plan is an upper bound of the device peak, and a tight one (within
// 10 %). On the tiny model the fixed cuBLASLt workspace is most of
// it; the bench reports the same comparison for the real sizes.
TEST_P(CudaGeneration, PeakMemoryWithinThePlan) {
  const Pipeline pipe = pipeline("cuda", GetParam());
  for (int P : {1, 4}) {
    SCOPED_TRACE(P);
    const auto req = expand_streams({5}, P, 11, SamplingParams{2.0, 900, 0.95});
    const MemoryPlan plan = pipe.plan_memory(req);
    pipe.release_cached_memory();
    pipe.reset_peak_device_memory();
    pipe.generate(req);
    const uint64_t peak = pipe.device_memory().peak;
    EXPECT_LE(peak, plan.total());
    EXPECT_GE(static_cast<double>(peak), 0.9 * static_cast<double>(plan.total()));
  }
}

// Stage times are CUDA events: they partition the device's span of the
// request, which lies inside the host's.
TEST_P(CudaGeneration, StageTimesAddUpWithinTheRequest) {
  const Pipeline pipe = pipeline("cuda", GetParam());
  const GeneratedImages out = pipe.generate(expand_streams({5}, 2, 11, SamplingParams{}));
  const StageTimings& t = out.timings;
  for (double ms : t.transformer_ms) EXPECT_GT(ms, 0.0);
  EXPECT_GT(t.decode_ms, 0.0);
  EXPECT_LE(t.stages_ms(), t.total_ms);
  EXPECT_EQ(pipe.work_clock()->kind(), "CUDA events on the backend's stream");
}

// Each scale's three steps (transformer, sampling, residual) and the
// decoder's pass run as they are, then are captured as CUDA graphs, then
// replayed: the three give the same bits as running every op as it is, and
// from the third request of a shape on every step is a replay.
TEST_P(CudaGeneration, GraphReplaysMatchOpsRunAsTheyAre) {
  const Pipeline graphs = pipeline("cuda", GetParam(), true), as_is = pipeline("cuda", GetParam(), false);
  const int64_t K = graphs.var_config().num_scales();
  for (int request = 0; request < 4; ++request) {
    SCOPED_TRACE(request);
    // Same shape, other classes, seeds, guidance, filters and temperature:
    // a replay reads this request's own values.
    const SamplingParams sp{2.0 + 0.5 * request, 900 - 200 * request, 0.95 - 0.1 * request, 1.0 + 0.1 * request};
    const auto req = expand_streams({request % 3, 7}, 2, 100 + request, sp);
    const GeneratedImages g = graphs.generate(req), e = as_is.generate(req);
    EXPECT_EQ(g.tokens, e.tokens);
    EXPECT_EQ(g.pixels, e.pixels);
    EXPECT_EQ(e.counters.replayed_steps, 0);
    // The tiny tokenizer decodes the four images in one pass.
    EXPECT_EQ(g.counters.replayed_steps, request >= 2 ? 3 * K + 1 : 0);
  }
}

INSTANTIATE_TEST_SUITE_P(Precisions, CudaGeneration, ::testing::Values("fp32", "bf16"));

// Same seeds, same draws: sampled (not greedy) tokens in float32 match the
// CPU's, but for draws within rounding of a boundary.
TEST(CudaSampledGeneration, TokensMatchTheCpu) {
  VARPS_SKIP_WITHOUT_CUDA();
  PipelineOptions gpu_opts;
  gpu_opts.device = "cuda";
  const Pipeline gpu = Pipeline::from_preset("tiny", gpu_opts);
  const Pipeline cpu = Pipeline::from_preset("tiny", PipelineOptions{2});
  const auto req = expand_streams({1, 7}, 4, 3, SamplingParams{});
  const GeneratedImages a = gpu.generate(req), b = cpu.generate(req);
  int64_t same = 0, total = 0;
  for (size_t i = 0; i < req.size(); ++i)
    for (size_t s = 0; s < a.tokens[i].size(); ++s)
      for (size_t t = 0; t < a.tokens[i][s].size(); ++t, ++total) same += a.tokens[i][s][t] == b.tokens[i][s][t];
  // A differing token changes every later scale's input, so agreement is
  // all or nearly all.
  EXPECT_GE(same, total * 99 / 100) << same << " of " << total;
}

}  // namespace
}  // namespace varps::testing
