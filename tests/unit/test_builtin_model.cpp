// The built-in trained model: found on disk, the default of every command,
// and what its images carry.
#include <gtest/gtest.h>

#include "unit/cli_run.hpp"
#include "varps/builtin_models.hpp"
#include "varps/config.hpp"
#include "varps/error.hpp"
#include "varps/image.hpp"
#include "varps/pipeline.hpp"

namespace varps {
namespace {

using test::CliRun;
using test::run_cli;
using test::TempDir;

TEST(BuiltinModels, EveryNamedModelIsFoundWithItsConfiguration) {
  for (const std::string& name : builtin_model_names()) {
    SCOPED_TRACE(name);
    const BuiltinModel m = find_builtin_model(name);
    EXPECT_TRUE(std::filesystem::is_regular_file(m.var));
    EXPECT_TRUE(std::filesystem::is_regular_file(m.vae));
    EXPECT_FALSE(m.summary.empty());
  }
  const Pipeline pipe = Pipeline::from_files(find_builtin_model("fmnist").var, find_builtin_model("fmnist").vae);
  EXPECT_EQ(pipe.var_config().depth, 8);
  EXPECT_EQ(pipe.var_config().num_classes, 10);
  EXPECT_EQ(pipe.var_config().patch_nums, (std::vector<int>{1, 2, 3, 4}));
  EXPECT_EQ(pipe.var_config().patch_nums.back() * pipe.vae_config().downsample(), 32);
  EXPECT_EQ(Pipeline::from_files(find_builtin_model("fmnist-d4").var, find_builtin_model("fmnist-d4").vae)
                .var_config()
                .depth,
            4);
}

TEST(BuiltinModels, AnUnknownNameIsRefusedNamingTheKnownOnes) {
  try {
    find_builtin_model("imagenet");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'imagenet'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("fmnist, fmnist-d4"), std::string::npos) << e.what();
  }
}

TEST(CliGenerate, WithoutAModelFlagRunsTheBuiltinTrainedModel) {
  TempDir dir;
  const CliRun r = run_cli(dir, {"generate", "--class", "7", "--seed", "3", "--out", "o"});
  test::expect_ok(r);
  EXPECT_NE(r.err.find("built-in model 'fmnist'"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("noise"), std::string::npos) << r.err;
  const RgbImage img = read_png(dir / "o/000000.png");
  EXPECT_EQ(img.width, 32);
  EXPECT_EQ(img.height, 32);
  auto text = test::png_text(dir / "o/000000.png");
  EXPECT_EQ(text["varps:model"], "fmnist");
  EXPECT_EQ(text["varps:class"], "7");
  // The same image as the library gives from the model's files.
  const BuiltinModel m = find_builtin_model("fmnist");
  const Pipeline pipe = Pipeline::from_files(m.var, m.vae);
  ImageRequest req;
  req.class_id = 7;
  req.seed = 3;
  const GeneratedImages g = pipe.generate({req});
  EXPECT_EQ(img.pixels, to_rgb8(g.pixels.data(), 32, 32).pixels);
}

TEST(CliBench, OnTheBuiltinModelDiversityIncludesTheGarmentFeatureDistance) {
  TempDir dir;
  test::expect_ok(run_cli(dir, {"bench", "--class", "7", "--streams", "1,3", "--schedule", "batched", "--warmup", "0",
                                "--repeats", "1", "--out", "b", "-q", "--threads", "2"}));
  const test::Json doc = test::read_json(dir / "b/bench.json");
  int with_pairs = 0;
  for (const auto& run : doc["runs"]) {
    ASSERT_TRUE(run["diversity"].contains("feature_distance")) << run.dump();
    const double d = run["diversity"]["feature_distance"].get<double>();
    if (run["streams"].get<int>() == 3) {
      ++with_pairs;
      EXPECT_GT(d, 0.0);
      EXPECT_EQ(run["control_diversity"]["feature_distance"].get<double>(), 0.0);
    }
  }
  EXPECT_EQ(with_pairs, 1);
  EXPECT_NE(test::read_bytes(dir / "b/bench.md").find("feature distance"), std::string::npos);
}

}  // namespace
}  // namespace varps
