// The fast modes' flags: listed in --help, refused with a one-line error
// when malformed or outside the model, and the images the library gives.
#include <gtest/gtest.h>

#include "unit/cli_run.hpp"

namespace varps::test {
namespace {

TEST(CliFastModes, GenerateHelpListsTheModes) {
  TempDir dir;
  const CliRun r = run_cli(dir, {"generate", "--help"});
  expect_ok(r);
  for (const char* flag : {"--cfg-until-scale", "--prune", "--prune-scales", "--refiner", "--refine-from-scale"})
    EXPECT_NE(r.out.find(flag), std::string::npos) << flag;
  EXPECT_NE(r.out.find("FastVAR"), std::string::npos);
  EXPECT_NE(r.out.find("CoDe"), std::string::npos);
}

TEST(CliFastModes, MatchTheLibraryAndSayWhatRan) {
  TempDir dir;
  expect_ok(run_cli_tiny(dir, {"generate", "--class", "2,5", "--seed", "40", "--cfg-until-scale", "2", "--prune",
                               "0.5", "--refiner", "tiny", "--refine-from-scale", "3", "--out", "o", "--tokens-out",
                               "t.json", "--quiet"}));
  Pipeline pipe = Pipeline::from_preset("tiny");
  pipe.attach_refiner_preset("tiny");
  GenerateOptions o;
  o.fast = {2, 0.5, 2, 3};
  const GeneratedImages g = pipe.generate(expand_streams({2, 5}, 1, 40, SamplingParams{}), o);
  EXPECT_EQ(json_tokens(read_json(dir / "t.json")), g.tokens);
  auto text = png_text(dir / "o/000001.png");
  EXPECT_EQ(text["varps:fast"], "cfg until scale 2, prune 0.5 at the last 2 scales, refiner from scale 3");
  EXPECT_EQ(text["varps:refiner"], "tiny");
}

TEST(CliFastModes, BadValuesAreRefused) {
  TempDir dir;
  const auto gen = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = {"generate", "--class", "1", "--out", "o"};
    args.insert(args.end(), extra.begin(), extra.end());
    return run_cli_tiny(dir, args);
  };
  expect_error(gen({"--prune", "1"}), 2, {"--prune", "[0, 1)"});
  expect_error(gen({"--prune", "-0.5"}), 2, {"--prune"});
  expect_error(gen({"--cfg-until-scale", "x"}), 2, {"--cfg-until-scale", "'x'"});
  expect_error(gen({"--refiner", "tiny"}), 2, {"--refiner needs --refine-from-scale"});
  expect_error(gen({"--refine-from-scale", "3"}), 2, {"--refine-from-scale needs --refiner"});
  expect_error(gen({"--cfg-until-scale", "9"}), 1, {"cfg-until-scale 9 is out of range", "4 scales"});
  expect_error(gen({"--refiner", "d16", "--refine-from-scale", "3", "--quiet"}), 1, {"refiner preset d16", "patch_nums"});
  expect_error(gen({"--refiner", "missing.pth", "--refine-from-scale", "3", "--quiet"}), 1, {"missing.pth"});
}

}  // namespace
}  // namespace varps::test
