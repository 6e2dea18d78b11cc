// The precision comparison (varps/precision_error.hpp, `varps
// precision-error`): a pipeline against itself shows no error, bf16 against
// float32 shows some and says where; the command's files and refusals.
#include <gtest/gtest.h>

#include <cmath>

#include "unit/cli_run.hpp"
#include "varps/precision_error.hpp"

namespace varps::test {
namespace {

std::vector<ImageRequest> requests() {
  return {{1, 5, SamplingParams{}}, {4, 6, SamplingParams{3.0, 20, 0.9}}, {7, 7, SamplingParams{0.0, 0, 0.0}}};
}

Pipeline tiny(const std::string& precision) {
  PipelineOptions o{2};
  o.precision = precision;
  return Pipeline::from_preset("tiny", o);
}

TEST(PrecisionError, APipelineAgainstItselfShowsNone) {
  const Pipeline p = tiny("fp32");
  const bench::PrecisionError e = bench::measure_precision_error(p, p, requests());
  EXPECT_EQ(e.images, 3);
  ASSERT_EQ(e.scales.size(), p.var_config().patch_nums.size());
  for (const auto& s : e.scales) {
    EXPECT_EQ(s.logits_error, 0.0);
    EXPECT_EQ(s.kl, 0.0);
    EXPECT_EQ(s.top1_agreement, 1.0);
    EXPECT_EQ(s.token_agreement, 1.0);
  }
  EXPECT_TRUE(std::isinf(e.psnr_db));
  EXPECT_TRUE(std::isinf(e.decoded_psnr_db));
}

TEST(PrecisionError, Bf16AgainstFloat32ShowsSomeAndTheTableSaysSo) {
  const bench::PrecisionError e = bench::measure_precision_error(tiny("fp32"), tiny("bf16"), requests());
  EXPECT_GT(e.logits_error, 1e-4);
  EXPECT_LT(e.logits_error, 3e-2);
  for (const auto& s : e.scales) {
    EXPECT_GT(s.kl, 0.0);
    EXPECT_LE(s.token_agreement, 1.0);
  }
  const std::string md = bench::precision_error_markdown(e);
  EXPECT_NE(md.find("| 1 | 1 |"), std::string::npos) << md;
  EXPECT_NE(md.find("PSNR"), std::string::npos) << md;
}

TEST(PrecisionError, CommandWritesItsFilesAndRefusesFloat32) {
  TempDir dir;
  const CliRun r = run_cli_tiny(dir, {"precision-error", "--precision", "bf16", "--images", "2", "--out", "pe", "-j", "2"});
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_NE(r.out.find("tokens agreeing"), std::string::npos) << r.out;
  const Json j = Json::parse(read_bytes(dir / "pe" / "precision-error.json"));
  EXPECT_EQ(j["precision"], "bf16");
  EXPECT_EQ(j["scales"].size(), 4u);
  EXPECT_TRUE(fs::exists(dir / "pe" / "precision-error.md"));
  expect_error(run_cli_tiny(dir, {"precision-error", "--out", "pe"}), 2, {"--precision", "reduced precision"});
  expect_error(run_cli_tiny(dir, {"precision-error", "--precision", "bf16", "--images", "0", "--out", "pe"}), 2,
               {"--images"});
  expect_error(run_cli_tiny(dir, {"precision-error", "--precision", "bf16", "--class", "10", "--out", "pe"}), 1,
               {"--class 10", "10 classes"});
}

}  // namespace
}  // namespace varps::test
