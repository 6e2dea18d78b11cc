// The work a request's stages must do, counted from the shapes: checked by
// hand on the smallest case and by how it scales with rows and schedules.
#include <gtest/gtest.h>

#include "varps/pipeline.hpp"

namespace varps {
namespace {

const Pipeline& tiny() {
  static const Pipeline p = Pipeline::from_preset("tiny", PipelineOptions{2});
  return p;
}

const SamplingParams kUnguided{0.0, 0, 0.0};

TEST(RequestWork, FirstScaleOfOneImageByHand) {
  const VarConfig& c = tiny().var_config();
  const RequestWork w = tiny().work({{1, 0, kUnguided}});
  ASSERT_EQ(w.transformer.size(), c.patch_nums.size());
  // One row, one token attending to itself.
  const double C = c.embed_dim, hid = c.mlp_hidden, V = c.vocab_size;
  const double products = 3 * C * C + C * C + 2 * C * hid;
  EXPECT_DOUBLE_EQ(w.transformer[0].flops, c.depth * (2 * products + 4 * C) + 2 * C * V);
  // Weights once, one key and one value read and written per block, the logits.
  EXPECT_DOUBLE_EQ(w.transformer[0].bytes, c.depth * (products * 4 + 2 * C * 4 + 2 * C * 4) + V * C * 4 + V * 4);
  EXPECT_GT(w.decode.flops, 0.0);
  EXPECT_GT(w.decode.bytes, 0.0);
}

TEST(RequestWork, RowsShareTheWeights) {
  const RequestWork one = tiny().work({{1, 0, kUnguided}});
  const RequestWork two = tiny().work({{1, 0, kUnguided}, {2, 1, kUnguided}});
  const RequestWork guided = tiny().work({{1, 0, SamplingParams{2.0, 0, 0.0}}});
  const StageWork t1 = one.transformer_total(), t2 = two.transformer_total();
  EXPECT_DOUBLE_EQ(t2.flops, 2 * t1.flops);
  EXPECT_LT(t2.bytes, 2 * t1.bytes);  // the weights are read once for both
  EXPECT_GT(t2.bytes, t1.bytes);
  EXPECT_DOUBLE_EQ(two.decode.flops, 2 * one.decode.flops);
  // Guidance adds an unconditional row to the backbone (head included), not
  // an image to decode.
  EXPECT_DOUBLE_EQ(guided.transformer_total().flops, t2.flops);
  EXPECT_DOUBLE_EQ(guided.decode.flops, one.decode.flops);
}

TEST(RequestWork, SequentialStreamsReadTheWeightsEachTime) {
  const auto req = expand_streams({3}, 4, 0, kUnguided);
  const RequestWork batched = tiny().work(req, Schedule::Batched);
  const RequestWork sequential = tiny().work(req, Schedule::Sequential);
  EXPECT_DOUBLE_EQ(sequential.transformer_total().flops, batched.transformer_total().flops);
  EXPECT_GT(sequential.transformer_total().bytes, batched.transformer_total().bytes);
  EXPECT_DOUBLE_EQ(sequential.decode.flops, batched.decode.flops);
}

}  // namespace
}  // namespace varps
