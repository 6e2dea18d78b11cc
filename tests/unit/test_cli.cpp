// The `varps` command-line program, run as a separate process: outputs
// (PNG files, text metadata, token JSON), agreement with the library API,
// and one-line errors with the documented exit status (1: runtime, 2: usage)
// for bad flags, bad files and unwritable outputs.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "unit/cli_run.hpp"
#include "unit/test_files.hpp"
#include "varps/checkpoint.hpp"
#include "varps/config.hpp"
#include "varps/image.hpp"
#include "varps/pipeline.hpp"

namespace varps::test {
namespace {

namespace fs = std::filesystem;

const fs::path kData = fs::path(VARPS_TEST_DATA);
const fs::path kTiny = kData / "golden" / "tiny";

// Checks the layout of a --tokens-out file: patch_nums, and per image one
// row-major pn·pn map per scale with every token inside the vocabulary.
void expect_token_layout(const Json& doc, const std::vector<int>& patch_nums, size_t images, int vocab) {
  ASSERT_TRUE(doc.is_object());
  ASSERT_EQ(doc.at("patch_nums").get<std::vector<int>>(), patch_nums);
  ASSERT_EQ(doc.at("images").size(), images);
  for (const Json& img : doc.at("images")) {
    ASSERT_TRUE(img.contains("class"));
    ASSERT_TRUE(img.contains("seed"));
    const TokenMaps t = img.at("tokens").get<TokenMaps>();
    ASSERT_EQ(t.size(), patch_nums.size());
    for (size_t si = 0; si < t.size(); ++si) {
      EXPECT_EQ(t[si].size(), static_cast<size_t>(patch_nums[si] * patch_nums[si])) << "scale " << si;
      for (int32_t v : t[si]) {
        EXPECT_GE(v, 0);
        EXPECT_LT(v, vocab);
      }
    }
  }
}

void write_test_png(const fs::path& p, int w, int h) {
  RgbImage img;
  img.width = w;
  img.height = h;
  img.pixels.resize(static_cast<size_t>(w) * h * 3);
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<uint8_t>((i * 37 + 11) % 256);
  write_png(p, img);
}

// ---------------------------------------------------------------- help

TEST(Cli, HelpListsCommandsAndExitStatus) {
  TempDir dir;
  const CliRun r = run_cli(dir, {"--help"});
  expect_ok(r);
  for (const char* s : {"generate", "reconstruct", "inspect", "Exit status", "varps: error:"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s << "\n" << r.out;
}

TEST(Cli, GenerateHelpExplainsEveryFlagWithDefaults) {
  TempDir dir;
  const CliRun r = run_cli(dir, {"generate", "--help"});
  expect_ok(r);
  for (const char* s : {"--var", "--vae", "--preset", "--class", "uncond", "--cfg", "=4", "--top-k", "=900",
                        "--top-p", "=0.95", "--seed", "seed + i", "--out", "--tokens-out", "--threads", "--verbose",
                        "--quiet", "Philox", "only on its own", "Fashion-MNIST", "smoke-test"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s << "\n" << r.out;
  for (const char* cmd : {"reconstruct", "inspect"}) {
    const CliRun h = run_cli(dir, {cmd, "--help"});
    expect_ok(h);
    EXPECT_NE(h.out.find("Usage: varps " + std::string(cmd)), std::string::npos) << h.out;
  }
  const CliRun rec = run_cli(dir, {"reconstruct", "--help"});
  for (const char* s : {"--vae", "--out", "--patch-nums", "--tokens-out", "--threads"})
    EXPECT_NE(rec.out.find(s), std::string::npos) << s << "\n" << rec.out;
}

TEST(Cli, VersionMatchesTheProjectVersion) {
  // project(varps VERSION x.y.z ...) in the top-level CMakeLists.txt
  const std::string cmake = test::read_bytes(kData.parent_path().parent_path() / "CMakeLists.txt");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(cmake, m, std::regex(R"(project\(varps VERSION ([0-9.]+))")));
  TempDir dir;
  const CliRun r = run_cli(dir, {"--version"});
  expect_ok(r);
  EXPECT_EQ(r.out, "varps " + m[1].str() + "\n");
}

TEST(Cli, UsageErrorsExitWithTwo) {
  TempDir dir;
  expect_error(run_cli(dir, {}), 2, {"subcommand"});
  expect_error(run_cli(dir, {"frobnicate"}), 2, {"frobnicate"});
  expect_error(run_cli_tiny(dir, {"generate", "--class", "1"}), 2, {"--out"});
  expect_error(run_cli_tiny(dir, {"generate", "--out", "o"}), 2, {"--class"});
  expect_error(run_cli_tiny(dir, {"generate", "--class", "1", "--out", "o", "--bogus"}), 2, {"--bogus"});
  expect_error(run_cli_tiny(dir, {"generate", "--class", "1", "--out", "o", "-v", "-q"}), 2, {"--quiet"});
  EXPECT_FALSE(fs::exists(dir / "o"));
}

// ---------------------------------------------------------------- generate

TEST(CliGenerate, TinyModelWritesOnePngPerClassWithMetadata) {
  TempDir dir;
  const CliRun r = run_cli_tiny(dir, {"generate", "--class", "3", "--class", "7", "--seed", "5", "--out", "imgs"});
  expect_ok(r);
  EXPECT_NE(r.err.find("tiny smoke-test model"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("random weights"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");
  ASSERT_TRUE(fs::exists(dir / "imgs/000000.png"));
  ASSERT_TRUE(fs::exists(dir / "imgs/000001.png"));
  EXPECT_FALSE(fs::exists(dir / "imgs/000002.png"));
  // tiny preset: last patch num 4 × downsample 2 (ch_mult 1,2) = 8
  const VaeConfig vc = preset_vae_config("tiny");
  const int side = preset_var_config("tiny").patch_nums.back() * vc.downsample();
  ASSERT_EQ(side, 8);
  const char* classes[] = {"3", "7"};
  const char* seeds[] = {"5", "6"};
  for (int i = 0; i < 2; ++i) {
    const fs::path p = dir / ("imgs/00000" + std::to_string(i) + ".png");
    const RgbImage img = read_png(p);
    EXPECT_EQ(img.width, side);
    EXPECT_EQ(img.height, side);
    auto text = png_text(p);
    EXPECT_EQ(text["varps:class"], classes[i]);
    EXPECT_EQ(text["varps:seed"], seeds[i]);
    EXPECT_EQ(text["varps:cfg"], "4");
    EXPECT_EQ(text["varps:top_k"], "900");
    EXPECT_EQ(text["varps:top_p"], "0.95");
    EXPECT_EQ(text["varps:preset"], "tiny");
    EXPECT_FALSE(text["varps:version"].empty());
    EXPECT_EQ(text["Software"].rfind("varps ", 0), 0u) << text["Software"];
  }
}

TEST(CliGenerate, MatchesTheLibraryPixelForPixelAndTokenForToken) {
  TempDir dir;
  expect_ok(run_cli_tiny(dir, {"generate", "--class", "2,uncond", "--seed", "40", "--cfg", "1.5", "--top-k", "20",
                          "--top-p", "0.8", "--out", "o", "--tokens-out", "t.json", "--quiet"}));
  const Pipeline pipe = Pipeline::from_preset("tiny");
  std::vector<ImageRequest> reqs(2);
  reqs[0].class_id = 2;
  reqs[0].seed = 40;
  reqs[1].class_id = pipe.var_config().num_classes;
  reqs[1].seed = 41;
  for (auto& q : reqs) q.sampling = {1.5, 20, 0.8};
  const GeneratedImages g = pipe.generate(reqs);
  const Json doc = read_json(dir / "t.json");
  EXPECT_EQ(json_tokens(doc), g.tokens);
  EXPECT_EQ(doc["images"][1]["class"], 10);
  for (int i = 0; i < 2; ++i) {
    const RgbImage want = to_rgb8(g.pixels.data() + i * 3 * g.height * g.width, static_cast<int>(g.height),
                                  static_cast<int>(g.width));
    const fs::path p = dir / ("o/00000" + std::to_string(i) + ".png");
    EXPECT_EQ(read_png(p).pixels, want.pixels) << p;
    auto text = png_text(p);
    EXPECT_EQ(text["varps:cfg"], "1.5");
    EXPECT_EQ(text["varps:top_k"], "20");
    EXPECT_EQ(text["varps:top_p"], "0.8");
  }
}

TEST(CliGenerate, TokensOutHasOneMapPerScaleInsideTheVocabulary) {
  TempDir dir;
  const CliRun r = run_cli_tiny(dir, {"generate", "--class", "1,4", "--seed", "9", "--out", "o", "--tokens-out", "t.json"});
  expect_ok(r);
  const Json doc = read_json(dir / "t.json");
  expect_token_layout(doc, {1, 2, 3, 4}, 2, 64);
  EXPECT_EQ(doc["images"][0]["class"], 1);
  EXPECT_EQ(doc["images"][0]["seed"], 9);
  EXPECT_EQ(doc["images"][1]["class"], 4);
  EXPECT_EQ(doc["images"][1]["seed"], 10);
}

TEST(CliGenerate, SameSeedSameTokensOtherSeedOtherTokens) {
  TempDir dir;
  auto tokens = [&](const std::vector<std::string>& extra) {
    std::vector<std::string> args = {"generate", "--out", "o", "--tokens-out", "t.json", "-q"};
    args.insert(args.end(), extra.begin(), extra.end());
    const CliRun r = run_cli_tiny(dir, args);
    EXPECT_EQ(r.code, 0) << describe(r);
    return json_tokens(read_json(dir / "t.json"));
  };
  const auto a = tokens({"--class", "3", "--seed", "11"});
  const auto b = tokens({"--class", "3", "--seed", "11"});
  const auto c = tokens({"--class", "3", "--seed", "12"});
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  // An image's draws depend on its own class and seed only: class 3 with
  // seed 11 as the second image of a batch (seeds 10, 11) gives the same maps.
  const auto d = tokens({"--class", "5,3", "--seed", "10"});
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(d[1], a[0]);
}

TEST(CliGenerate, VerbosePrintsModelThreadsAndTimingsQuietPrintsNothing) {
  TempDir dir;
  const CliRun v = run_cli_tiny(dir, {"generate", "--class", "1", "--out", "o", "--verbose", "--threads", "1"});
  expect_ok(v);
  for (const char* s : {"VAR depth 2", "VQVAE", "threads: 1", "transformer", "scale 4/4", "sampling",
                        "residual path", "decode", "total"})
    EXPECT_NE(v.err.find(s), std::string::npos) << s << "\n" << v.err;
  const CliRun q = run_cli_tiny(dir, {"generate", "--class", "1", "--out", "o", "--quiet"});
  expect_ok(q);
  EXPECT_EQ(q.err, "");
  EXPECT_EQ(q.out, "");
}

TEST(CliGenerate, GoldenCheckpointsUnconditionalAndBothFormats) {
  TempDir dir;
  for (const char* ext : {".pth", ".safetensors"}) {
    const std::string var = (kTiny / (std::string("var") + ext)).string();
    const std::string vae = (kTiny / (std::string("vae") + ext)).string();
    const CliRun r = run_cli(dir, {"generate", "--var", var, "--vae", vae, "--class", "uncond", "--class", "0", "--out",
                                "g", "--tokens-out", "t.json"});
    expect_ok(r);
    EXPECT_EQ(r.err.find("tiny model"), std::string::npos) << r.err;
    for (const char* f : {"g/000000.png", "g/000001.png"}) {
      const RgbImage img = read_png(dir / f);
      EXPECT_EQ(img.width, 8);
      EXPECT_EQ(img.height, 8);
    }
    auto text = png_text(dir / "g/000000.png");
    EXPECT_EQ(text["varps:class"], "10");  // 10 classes: id 10 is unconditional
    EXPECT_EQ(text["varps:var"], var);
    EXPECT_EQ(text["varps:vae"], vae);
    EXPECT_EQ(png_text(dir / "g/000001.png")["varps:class"], "0");
    expect_token_layout(read_json(dir / "t.json"), {1, 2, 3, 4}, 2, 64);
  }
}

TEST(CliGenerate, ClassOutsideTheModelIsAnError) {
  TempDir dir;
  expect_error(run_cli_tiny(dir, {"generate", "--class", "10000", "--out", "o"}), 1, {"class 10000", "0..9", "uncond"});
  expect_error(run_cli_tiny(dir, {"generate", "--class", "-1", "--out", "o"}), 1, {"class -1", "0..9"});
  expect_error(run_cli_tiny(dir, {"generate", "--class", "1,abc", "--out", "o"}), 2, {"'abc'", "--class"});
  expect_error(run_cli(dir, {"generate", "--var", (kTiny / "var.pth").string(), "--vae",
                             (kTiny / "vae.pth").string(), "--class", "11", "--out", "o"}),
               1, {"class 11", "0..9"});
  EXPECT_FALSE(fs::exists(dir / "o"));  // checked before anything is written
}

struct BadFlag {
  std::string flag, value;
};

void PrintTo(const BadFlag& b, std::ostream* os) { *os << b.flag << " " << b.value; }

class CliBadFlag : public ::testing::TestWithParam<BadFlag> {};

TEST_P(CliBadFlag, NamesTheFlagAndValue) {
  TempDir dir;
  const BadFlag& b = GetParam();
  expect_error(run_cli_tiny(dir, {"generate", "--class", "1", "--out", "o", b.flag, b.value}), 2,
               {b.flag, "'" + b.value + "'"});
  EXPECT_FALSE(fs::exists(dir / "o"));
}

INSTANTIATE_TEST_SUITE_P(Generate, CliBadFlag,
                         ::testing::Values(BadFlag{"--top-k", "-1"}, BadFlag{"--top-k", "ten"},
                                           BadFlag{"--top-p", "1.5"}, BadFlag{"--top-p", "-0.1"},
                                           BadFlag{"--cfg", "-1"}, BadFlag{"--cfg", "nan"}, BadFlag{"--cfg", "inf"},
                                           BadFlag{"--cfg", "4x"}, BadFlag{"--threads", "-2"},
                                           BadFlag{"--threads", "1.5"}, BadFlag{"--seed", "-1"},
                                           BadFlag{"--seed", "1e3"}, BadFlag{"--seed", "18446744073709551616"}),
                         [](const auto& info) {
                           std::string n = info.param.flag.substr(2) + "_" + std::to_string(info.index);
                           for (char& c : n)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return n;
                         });

TEST(CliGenerate, FiltersCanBeSwitchedOff) {
  TempDir dir;
  expect_ok(run_cli_tiny(dir, {"generate", "--class", "1", "--top-k", "0", "--top-p", "0", "--cfg", "0", "--out", "o",
                          "--quiet"}));
  auto text = png_text(dir / "o/000000.png");
  EXPECT_EQ(text["varps:top_k"], "0");
  EXPECT_EQ(text["varps:top_p"], "0");
  EXPECT_EQ(text["varps:cfg"], "0");
}

TEST(CliGenerate, CheckpointFlagCombinations) {
  TempDir dir;
  const std::string var = (kTiny / "var.pth").string(), vae = (kTiny / "vae.pth").string();
  expect_error(run_cli(dir, {"generate", "--var", var, "--class", "1", "--out", "o"}), 2, {"--var", "--vae"});
  expect_error(run_cli(dir, {"generate", "--vae", vae, "--class", "1", "--out", "o"}), 2, {"--var", "--vae"});
  expect_error(run_cli(dir, {"generate", "--var", var, "--vae", vae, "--preset", "d16", "--class", "1", "--out", "o"}),
               2, {"--preset"});
  expect_error(run_cli(dir, {"generate", "--preset", "d99", "--class", "1", "--out", "o"}), 2, {"'d99'", "d16"});
  expect_error(run_cli(dir, {"generate", "--var", "/nonexistent/var_d16.pth", "--vae", vae, "--class", "1", "--out",
                             "o"}),
               1, {"/nonexistent/var_d16.pth"});
  expect_error(run_cli(dir, {"generate", "--var", var, "--vae", "/nonexistent/vae.pth", "--class", "1", "--out",
                             "o"}),
               1, {"/nonexistent/vae.pth"});
  EXPECT_FALSE(fs::exists(dir / "o"));
}

TEST(CliGenerate, TruncatedAndForeignCheckpoints) {
  TempDir dir;
  const std::string vae = (kTiny / "vae.pth").string();
  test::write_bytes(dir / "trunc.pth", test::read_bytes(kTiny / "var.pth").substr(0, 1000));
  expect_error(run_cli(dir, {"generate", "--var", "trunc.pth", "--vae", vae, "--class", "1", "--out", "o"}), 1,
               {"trunc.pth"});
  // a VQVAE where the VAR belongs
  expect_error(run_cli(dir, {"generate", "--var", vae, "--vae", vae, "--class", "1", "--out", "o"}), 1,
               {vae, "not a VAR checkpoint"});
  // a VAR where the VQVAE belongs
  expect_error(run_cli(dir, {"generate", "--var", (kTiny / "var.pth").string(), "--vae",
                             (kTiny / "var.pth").string(), "--class", "1", "--out", "o"}),
               1, {"var.pth", "not a VQVAE checkpoint"});
  test::write_bytes(dir / "text.pth", "hello, I am not a checkpoint\n");
  expect_error(run_cli(dir, {"generate", "--var", "text.pth", "--vae", vae, "--class", "1", "--out", "o"}), 1,
               {"text.pth"});
}

TEST(CliGenerate, MaliciousPickleIsRefusedByNameAndNeverRun) {
  TempDir dir;
  const fs::path marker = dir / "pwned";
  test::PickleWriter w;
  w.proto().global("os", "system").str("touch " + marker.string()).op('\x85').reduce().stop();
  test::write_torch_zip(dir / "evil.pth", w.bytes(), {}, "archive");
  const std::string vae = (kTiny / "vae.pth").string();
  expect_error(run_cli(dir, {"generate", "--var", "evil.pth", "--vae", vae, "--class", "1", "--out", "o"}), 1,
               {"evil.pth", "refused global 'os.system'"});
  expect_error(run_cli(dir, {"inspect", "evil.pth"}), 1, {"evil.pth", "os.system"});
  EXPECT_FALSE(fs::exists(marker));
}

TEST(CliGenerate, CorruptedSafetensorsAndMisShapedTensors) {
  TempDir dir;
  std::string bytes = test::read_bytes(kTiny / "var.safetensors");
  bytes[0] = static_cast<char>(0xff);  // header length far beyond the file
  test::write_bytes(dir / "corrupt.safetensors", bytes);
  const std::string vae = (kTiny / "vae.safetensors").string();
  expect_error(run_cli(dir, {"generate", "--var", "corrupt.safetensors", "--vae", vae, "--class", "1", "--out", "o"}),
               1, {"corrupt.safetensors"});
  // A VQVAE whose decoder.conv_out has the wrong shape.
  const Checkpoint src = Checkpoint::open(kTiny / "vae.safetensors");
  std::vector<std::pair<std::string, Tensor>> ts;
  for (const auto& rec : src.tensors()) ts.emplace_back(rec.name, src.read_f32(rec));
  for (auto& [n, t] : ts)
    if (n == "decoder.conv_out.weight") t = Tensor({3, 32, 1, 1});
  std::vector<NamedTensor> named;
  for (auto& [n, t] : ts) named.push_back({n, &t, nullptr});
  write_safetensors(dir / "bad_vae.safetensors", named);
  expect_error(run_cli(dir, {"generate", "--var", (kTiny / "var.safetensors").string(), "--vae",
                             "bad_vae.safetensors", "--class", "1", "--out", "o"}),
               1, {"bad_vae.safetensors", "'decoder.conv_out.weight' has shape [3, 32, 1, 1], expected [3, 32, 3, 3]"});
  EXPECT_FALSE(fs::exists(dir / "o" / "000000.png"));
}

TEST(CliGenerate, UnwritableOutputs) {
  TempDir dir;
  const std::string proc = "/proc/varps-test-" + std::to_string(::getpid());
  expect_error(run_cli_tiny(dir, {"generate", "--class", "1", "--out", proc}), 1, {proc});
  test::write_bytes(dir / "plain", "x");
  expect_error(run_cli_tiny(dir, {"generate", "--class", "1", "--out", "plain/sub"}), 1, {"plain/sub"});
  expect_error(run_cli_tiny(dir, {"generate", "--class", "1", "--out", "plain"}), 1, {"'plain'", "not a directory"});
  expect_error(run_cli_tiny(dir, {"generate", "--class", "1", "--out", "o", "--tokens-out", "nodir/t.json"}), 1,
               {"nodir/t.json", "--tokens-out"});
}

// ---------------------------------------------------------------- inspect

class CliInspect : public ::testing::TestWithParam<std::string> {};

TEST_P(CliInspect, PrintsFormatModelAndTensorTable) {
  const fs::path dir_case = kData / "golden" / GetParam();
  const Json cfg = read_json(dir_case / "config.json");
  TempDir dir;
  for (const char* stem : {"var", "vae"}) {
    for (const char* ext : {".pth", ".safetensors"}) {
      const fs::path file = dir_case / (std::string(stem) + ext);
      const CliRun r = run_cli(dir, {"inspect", file.string()});
      expect_ok(r);
      EXPECT_EQ(r.err, "");
      const Checkpoint ckpt = Checkpoint::open(file);
      const std::string fmt = std::string(ext) == ".pth" ? "format:    pytorch-zip" : "format:    safetensors";
      EXPECT_NE(r.out.find(fmt), std::string::npos) << r.out;
      EXPECT_NE(r.out.find(file.string()), std::string::npos);
      EXPECT_NE(r.out.find("tensors:   " + std::to_string(ckpt.tensors().size()) + "\n"), std::string::npos)
          << r.out;
      if (std::string(stem) == "var") {
        const std::string depth = "VAR depth " + std::to_string(cfg["var"]["depth"].get<int>()) + ",";
        EXPECT_NE(r.out.find(depth), std::string::npos) << depth << "\n" << r.out;
        EXPECT_NE(r.out.find("word_embed.weight"), std::string::npos);
      } else {
        std::string mult;
        for (int m : cfg["vqvae"]["ch_mult"].get<std::vector<int>>()) {
          if (!mult.empty()) mult += ',';
          mult += std::to_string(m);
        }
        EXPECT_NE(r.out.find("ch_mult " + mult + ","), std::string::npos) << mult << "\n" << r.out;
        EXPECT_NE(r.out.find("quantize.embedding.weight"), std::string::npos);
      }
      // one table row per tensor, with dtype and shape
      for (const TensorRecord& rec : ckpt.tensors()) {
        const std::regex special(R"([.\[\]])");
        std::string pattern = "\n";
        pattern += std::regex_replace(rec.name, special, R"(\$&)");
        pattern += " +";
        pattern += dtype_name(rec.dtype);
        pattern += " +";
        pattern += std::regex_replace(shape_str(rec.shape), special, R"(\$&)");
        pattern += " +[0-9]+\n";
        const std::regex row(pattern);
        EXPECT_TRUE(std::regex_search(r.out, row)) << rec.name;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Golden, CliInspect, ::testing::Values("tiny", "small", "saln"));

TEST(CliInspectErrors, MissingTruncatedAndForeignFiles) {
  TempDir dir;
  expect_error(run_cli(dir, {"inspect", "missing.pth"}), 1, {"missing.pth"});
  test::write_bytes(dir / "trunc.pth", test::read_bytes(kTiny / "var.pth").substr(0, 1000));
  expect_error(run_cli(dir, {"inspect", "trunc.pth"}), 1, {"trunc.pth"});
  expect_error(run_cli(dir, {"inspect", (kTiny / "config.json").string()}), 1, {"config.json"});
  expect_error(run_cli(dir, {"inspect"}), 2, {"FILE"});
}

TEST(CliInspectErrors, UnknownModelTypeIsNotAnError) {
  TempDir dir;
  Tensor t({2, 3});
  write_safetensors(dir / "other.safetensors", {{"some.weight", &t, nullptr}});
  const CliRun r = run_cli(dir, {"inspect", "other.safetensors"});
  expect_ok(r);
  EXPECT_NE(r.out.find("unknown model type"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("some.weight"), std::string::npos) << r.out;
}

// ---------------------------------------------------------------- reconstruct

TEST(CliReconstruct, GoldenTokenizerRoundTripMatchesTheLibrary) {
  TempDir dir;
  write_test_png(dir / "in.png", 8, 8);
  const fs::path vae = kTiny / "vae.pth";
  const CliRun r = run_cli(dir, {"reconstruct", "--vae", vae.string(), "in.png", "--out", "rec.png", "--patch-nums",
                              "1,2,3,4", "--tokens-out", "t.json"});
  expect_ok(r);
  const RgbImage rec = read_png(dir / "rec.png");
  EXPECT_EQ(rec.width, 8);
  EXPECT_EQ(rec.height, 8);
  const Json doc = read_json(dir / "t.json");
  expect_token_layout(doc, {1, 2, 3, 4}, 1, 64);
  EXPECT_TRUE(doc["images"][0]["class"].is_null());
  EXPECT_TRUE(doc["images"][0]["seed"].is_null());

  // The same stages through the library.
  const Pipeline pipe = Pipeline::vae_only(vae);
  const Tensor chw = rgb8_to_signed_chw(read_png(dir / "in.png"));
  const Tensor f = pipe.encode(Tensor({1, 3, 8, 8}, chw.data));
  Tensor f_hat;
  const auto tokens = pipe.quantize(f, {1, 2, 3, 4}, &f_hat);
  Tensor img = pipe.decode(f_hat);
  for (float& v : img.data) v = (v + 1.0f) * 0.5f;
  EXPECT_EQ(rec.pixels, to_rgb8(img.ptr(), 8, 8).pixels);
  EXPECT_EQ(json_tokens(doc)[0], tokens);
  EXPECT_EQ(png_text(dir / "rec.png")["varps:patch_nums"], "1,2,3,4");
}

TEST(CliReconstruct, WrongImageSizeAndPatchNums) {
  TempDir dir;
  const std::string vae = (kTiny / "vae.pth").string();
  write_test_png(dir / "wide.png", 8, 6);
  write_test_png(dir / "odd.png", 7, 7);
  write_test_png(dir / "ok.png", 8, 8);
  expect_error(run_cli(dir, {"reconstruct", "--vae", vae, "wide.png", "--out", "r.png", "--patch-nums", "1,2,3,4"}), 1,
               {"wide.png", "8x6"});
  expect_error(run_cli(dir, {"reconstruct", "--vae", vae, "odd.png", "--out", "r.png", "--patch-nums", "1,2,3,4"}), 1,
               {"odd.png", "7x7", "2"});
  expect_error(run_cli(dir, {"reconstruct", "--vae", vae, "ok.png", "--out", "r.png"}), 1, {"--patch-nums", "8x8"});
  expect_error(run_cli(dir, {"reconstruct", "--vae", vae, "ok.png", "--out", "r.png", "--patch-nums", "1,2,3"}), 1,
               {"--patch-nums", "latent side 4"});
  expect_error(run_cli(dir, {"reconstruct", "--vae", vae, "ok.png", "--out", "r.png", "--patch-nums", "1,0,4"}), 2,
               {"--patch-nums", "'1,0,4'"});
  expect_error(run_cli(dir, {"reconstruct", "--vae", vae, "missing.png", "--out", "r.png"}), 1, {"missing.png"});
  expect_error(run_cli(dir, {"reconstruct", "--vae", (kTiny / "var.pth").string(), "ok.png", "--out", "r.png",
                             "--patch-nums", "1,2,3,4"}),
               1, {"not a VQVAE checkpoint"});
  expect_error(run_cli(dir, {"reconstruct", "--vae", vae, "ok.png", "--out", "nodir/r.png", "--patch-nums",
                             "1,2,3,4"}),
               1, {"nodir/r.png"});
  EXPECT_FALSE(fs::exists(dir / "r.png"));
}

}  // namespace
}  // namespace varps::test

// ---------------------------------------------------------------- streams

namespace varps::test {
namespace {

TEST(CliStreams, StreamsPerClassWithConsecutiveSeeds) {
  TempDir dir;
  expect_ok(run_cli_tiny(dir, {"generate", "--class", "3,5", "--streams", "3", "--seed", "20", "--out", "o",
                          "--tokens-out", "t.json", "-q"}));
  const Json doc = read_json(dir / "t.json");
  ASSERT_EQ(doc.at("images").size(), 6u);
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(doc["images"][i]["class"].get<int>(), i < 3 ? 3 : 5);
    EXPECT_EQ(doc["images"][i]["seed"].get<uint64_t>(), 20u + i);
    EXPECT_TRUE(fs::exists(dir / "o" / ("00000" + std::to_string(i) + ".png")));
  }
  // Stream 4 (class 5, seed 24) is the same image generated alone.
  expect_ok(run_cli_tiny(dir, {"generate", "--class", "5", "--seed", "24", "--out", "alone", "--tokens-out", "a.json",
                          "-q"}));
  EXPECT_EQ(json_tokens(read_json(dir / "a.json"))[0], json_tokens(doc)[4]);
}

TEST(CliStreams, StreamParamsSetEachStream) {
  TempDir dir;
  test::write_bytes(dir / "p.json",
                    R"([{"class": 2, "seed": 7, "cfg": 0, "top_k": 1},
                        {"cfg": 2.5, "top_p": 0.5, "temperature": 0.7},
                        {"class": "uncond"}])");
  expect_ok(run_cli_tiny(dir, {"generate", "--class", "4", "--stream-params", "p.json", "--seed", "100", "--out", "o",
                          "--tokens-out", "t.json", "-q"}));
  const Json doc = read_json(dir / "t.json");
  ASSERT_EQ(doc.at("images").size(), 3u);
  EXPECT_EQ(doc["images"][0]["class"].get<int>(), 2);
  EXPECT_EQ(doc["images"][0]["seed"].get<uint64_t>(), 7u);
  EXPECT_EQ(doc["images"][1]["class"].get<int>(), 4);     // the default class
  EXPECT_EQ(doc["images"][1]["seed"].get<uint64_t>(), 101u);  // --seed + index
  EXPECT_EQ(doc["images"][2]["class"].get<int>(), 10);    // uncond on the tiny model
  const auto text = png_text(dir / "o" / "000001.png");
  EXPECT_EQ(text.at("varps:cfg"), "2.5");
  EXPECT_EQ(text.at("varps:top_p"), "0.5");
  EXPECT_EQ(text.at("varps:temperature"), "0.7");
  EXPECT_EQ(text.at("varps:top_k"), "900");  // from the flag default
}

TEST(CliStreams, BadStreamParamsAreNamed) {
  TempDir dir;
  test::write_bytes(dir / "bad_key.json", R"([{"class": 1}, {"klass": 1}])");
  expect_error(run_cli_tiny(dir, {"generate", "--stream-params", "bad_key.json", "--out", "o"}), 1,
               {"bad_key.json", "stream 1", "unknown field \"klass\""});
  test::write_bytes(dir / "bad_range.json", R"([{"class": 1, "top_p": 2}])");
  expect_error(run_cli_tiny(dir, {"generate", "--stream-params", "bad_range.json", "--out", "o"}), 1,
               {"bad_range.json", "stream 0", "top_p"});
  test::write_bytes(dir / "bad_class.json", R"([{"class": 99}])");
  expect_error(run_cli_tiny(dir, {"generate", "--stream-params", "bad_class.json", "--out", "o"}), 1,
               {"class 99 is out of range"});
  test::write_bytes(dir / "no_class.json", R"([{"seed": 1}])");
  expect_error(run_cli_tiny(dir, {"generate", "--stream-params", "no_class.json", "--out", "o"}), 1,
               {"no \"class\""});
  test::write_bytes(dir / "not_json.json", "[{");
  expect_error(run_cli_tiny(dir, {"generate", "--stream-params", "not_json.json", "--out", "o"}), 1,
               {"not_json.json", "not valid JSON"});
  expect_error(run_cli_tiny(dir, {"generate", "--stream-params", "missing.json", "--out", "o"}), 1, {"missing.json"});
  expect_error(run_cli_tiny(dir, {"generate", "--class", "1", "--streams", "0", "--out", "o"}), 2, {"--streams"});
  expect_error(run_cli_tiny(dir, {"generate", "--class", "1", "--streams", "-3", "--out", "o"}), 2, {"--streams"});
  expect_error(run_cli_tiny(dir, {"generate", "--class", "1", "--temperature", "0", "--out", "o"}), 2,
               {"--temperature"});
  expect_error(run_cli_tiny(dir, {"generate", "--stream-params", "bad_key.json", "--streams", "2", "--out", "o"}), 2,
               {"--stream-params"});
}

TEST(CliStreams, RequestBeyondTheMachinesMemoryIsRefusedFromItsPlan) {
  // A million streams of the tiny model plan over 100 GiB, mostly KV cache:
  // refused before anything is allocated, naming the plan and the machine's
  // memory. (On a machine with more, the count grows to twice its memory.)
  TempDir dir;
  const uint64_t phys =
      static_cast<uint64_t>(::sysconf(_SC_PHYS_PAGES)) * static_cast<uint64_t>(::sysconf(_SC_PAGE_SIZE));
  const uint64_t per_1000 = Pipeline::from_preset("tiny", PipelineOptions{1})
                                .plan_memory(expand_streams({1}, 1000, 0, SamplingParams{}))
                                .total();
  const std::string streams = std::to_string(std::max<uint64_t>(1000000, 2 * phys / per_1000 * 1000));
  const auto start = std::chrono::steady_clock::now();
  const CliRun r = run_cli_tiny(dir, {"generate", "--class", "1", "--streams", streams, "--out", "o", "-q"});
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  expect_error(r, 1, {"request needs ", " GiB (plan: weights ", ", KV cache ", ", activations ",
                      "for " + streams + " images, this machine has "});
  EXPECT_LT(seconds, 30.0) << "the plan check must come before the allocations";
  EXPECT_FALSE(fs::exists(dir / "o" / "000000.png"));
}

// ---------------------------------------------------------------- bench

TEST(CliBench, TinyBenchWritesReportsWithRealCounters) {
  TempDir dir;
  const CliRun r = run_cli_tiny(dir, {"bench", "--streams", "1,3", "--repeats", "3", "--warmup", "1", "--out", "b", "-q"});
  expect_ok(r);
  for (const char* f : {"bench.json", "bench.csv", "bench.md", "bench.svg"}) EXPECT_TRUE(fs::exists(dir / "b" / f)) << f;
  EXPECT_NE(r.out.find("| schedule | P |"), std::string::npos) << r.out;  // the Markdown table is printed
  const Json doc = read_json(dir / "b" / "bench.json");
  ASSERT_EQ(doc.at("runs").size(), 4u);  // (batched, sequential) x (1, 3)
  for (const Json& run : doc["runs"]) {
    const int P = run["streams"].get<int>();
    const bool batched = run["schedule"] == "batched";
    for (const Json& passes : run["backbone_passes_per_scale"]) EXPECT_EQ(passes.get<int>(), batched ? 1 : P);
    for (const Json& rows : run["rows_per_pass"]) EXPECT_EQ(rows.get<int>(), batched ? 2 * P : 2);
    EXPECT_EQ(run["latency_samples_ms"].size(), 3u);
    EXPECT_GT(run["latency_ms"]["median"].get<double>(), 0.0);
    EXPECT_GT(run["peak_memory_bytes"].get<uint64_t>(), 0u);
    // The arrays hold the weights and stay within the plan (the CPU's
    // workspace is not an array).
    const Json& plan = run["planned_memory_bytes"];
    const uint64_t arrays = run["arrays_peak_bytes"].get<uint64_t>();
    EXPECT_GT(arrays, plan["weights"].get<uint64_t>());
    EXPECT_LE(arrays, plan["total"].get<uint64_t>() - plan["of_which_workspace"].get<uint64_t>());
    EXPECT_EQ(run["control_diversity"]["token_disagreement"].get<double>(), 0.0);
    if (P == 3) {
      EXPECT_GT(run["diversity"]["token_disagreement"].get<double>(), 0.0);
      EXPECT_EQ(run["diversity"]["pairs"].get<int>(), 3);
    }
    for (const Json& f : run["flags"]) {
      // Timing noise on a shared machine may flag spread; nothing else may fire.
      EXPECT_TRUE(f["name"] == "spread_too_wide" || f["name"] == "latency_below_single_stream" ||
                  f["name"] == "speedup_above_streams")
          << f.dump();
    }
  }
  const std::string csv = test::read_bytes(dir / "b" / "bench.csv");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 5);
}

TEST(CliBench, BadFlags) {
  TempDir dir;
  expect_error(run_cli_tiny(dir, {"bench", "--streams", "0,2", "--out", "b"}), 2, {"--streams"});
  expect_error(run_cli_tiny(dir, {"bench", "--schedule", "parallel", "--out", "b"}), 2, {"--schedule"});
  expect_error(run_cli_tiny(dir, {"bench", "--repeats", "0", "--out", "b"}), 2, {"--repeats"});
  expect_error(run_cli_tiny(dir, {"bench", "--warmup", "-1", "--out", "b"}), 2, {"--warmup"});
  expect_error(run_cli_tiny(dir, {"bench", "--peak-tflops", "-2", "--out", "b"}), 2, {"--peak-tflops"});
  expect_error(run_cli_tiny(dir, {"bench", "--compare-parscale", "--peak-gbps", "3350", "--out", "b"}), 2,
               {"--peak-tflops and --peak-gbps"});
  expect_error(run_cli_tiny(dir, {"bench", "--class", "77", "--out", "b"}), 1, {"class 77"});
  expect_error(run_cli(dir, {"bench", "--preset", "d99", "--out", "b"}), 2, {"d99"});
  test::write_bytes(dir / "file", "x");
  expect_error(run_cli_tiny(dir, {"bench", "--out", "file/sub"}), 1, {"file/sub"});
}

}  // namespace
}  // namespace varps::test
