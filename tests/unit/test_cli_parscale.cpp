// The ParScale side of the `varps` program: `adapter init`, `generate
// --adapter` (against the library and the golden ParScale case), `bench
// --adapter` and `bench --compare-parscale`, and their errors.
#include <gtest/gtest.h>

#include "unit/cli_run.hpp"
#include "varps/adapter.hpp"
#include "varps/checkpoint.hpp"
#include "varps/config.hpp"

namespace varps::test {
namespace {

namespace fs = std::filesystem;

const fs::path kSaln = fs::path(VARPS_TEST_DATA) / "golden" / "saln";

TEST(CliAdapter, InitWritesTheLibrarysRandomAdapter) {
  TempDir dir;
  const test::CliRun r =
      run_cli(dir, {"adapter", "init", "--preset", "tiny", "-P", "3", "-T", "4", "--seed", "9", "--out", "a.safetensors"});
  expect_ok(r);
  EXPECT_NE(r.err.find("untrained"), std::string::npos) << r.err;
  const ParScaleAdapter got = ParScaleAdapter::load(dir / "a.safetensors");
  const ParScaleAdapter want = ParScaleAdapter::random_init(preset_var_config("tiny"), 3, 4, 9, 0.01);
  EXPECT_EQ(got.streams, 3);
  EXPECT_EQ(got.prefix_tokens, 4);
  EXPECT_DOUBLE_EQ(got.smooth, 0.01);
  ASSERT_EQ(got.depth(), want.depth());
  EXPECT_EQ(got.prefix_k[1].data, want.prefix_k[1].data);
  EXPECT_EQ(got.aggregate0_w.data, want.aggregate0_w.data);

  // From a checkpoint: the adapter fits that model.
  expect_ok(run_cli(dir, {"adapter", "init", "--model", (kSaln / "var.pth").string(), "-P", "2", "-T", "0",
                          "--smooth", "0", "--out", "s.safetensors"}));
  const ParScaleAdapter s = ParScaleAdapter::load(dir / "s.safetensors");
  EXPECT_EQ(s.depth(), 3);
  EXPECT_EQ(s.heads(), 3);
  EXPECT_EQ(s.head_dim(), 16);
  EXPECT_EQ(s.prefix_tokens, 0);
  EXPECT_EQ(s.smooth, 0.0);
}

TEST(CliAdapter, InitBadFlags) {
  TempDir dir;
  expect_error(run_cli(dir, {"adapter", "init", "--preset", "tiny", "-P", "0", "-T", "4", "--out", "a"}), 2,
               {"--streams"});
  expect_error(run_cli(dir, {"adapter", "init", "--preset", "tiny", "-P", "2", "-T", "-1", "--out", "a"}), 2,
               {"--prefix-tokens"});
  expect_error(run_cli(dir, {"adapter", "init", "--preset", "tiny", "-P", "2", "-T", "1", "--smooth", "2", "--out",
                             "a"}),
               2, {"--smooth"});
  expect_error(run_cli(dir, {"adapter", "init", "-P", "2", "-T", "1", "--out", "a"}), 2, {"--model", "--preset"});
  expect_error(run_cli(dir, {"adapter", "init", "--preset", "tiny", "--model", "x.pth", "-P", "2", "-T", "1",
                             "--out", "a"}),
               2, {"exclude"});
  expect_error(run_cli(dir, {"adapter", "init", "--preset", "d99", "-P", "2", "-T", "1", "--out", "a"}), 2, {"d99"});
  expect_error(run_cli(dir, {"adapter", "init", "--model", "missing.pth", "-P", "2", "-T", "1", "--out", "a"}), 1,
               {"missing.pth"});
  expect_error(run_cli(dir, {"adapter", "init", "--preset", "tiny", "-P", "2", "-T", "1", "--out", "no/dir/a"}), 1,
               {"no/dir"});
  expect_error(run_cli(dir, {"adapter"}), 2, {"adapter --help"});
}

TEST(CliAdapter, InspectDescribesAnAdapter) {
  TempDir dir;
  const test::CliRun r = run_cli(dir, {"inspect", (kSaln / "parscale_p2.safetensors").string()});
  expect_ok(r);
  EXPECT_NE(r.out.find("ParScale adapter: P 2 streams, T 4 prefix tokens, smoothing 0.01, depth 3, heads 3 x 16, C 48"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("aggregate.0.weight"), std::string::npos) << r.out;
}

TEST(CliAdapter, GenerateMatchesTheLibrary) {
  TempDir dir;
  expect_ok(run_cli(dir, {"adapter", "init", "--preset", "tiny", "-P", "3", "-T", "2", "--out", "a.safetensors"}));
  expect_ok(run_cli_tiny(dir, {"generate", "--adapter", "a.safetensors", "--class", "1,uncond", "--streams", "2", "--seed",
                          "30", "--cfg", "2", "--top-k", "10", "--out", "o", "--tokens-out", "t.json", "-q"}));
  Pipeline pipe = Pipeline::from_preset("tiny");
  pipe.attach_adapter(ParScaleAdapter::load(dir / "a.safetensors"));
  const auto req = expand_streams({1, pipe.var_config().num_classes}, 2, 30, SamplingParams{2.0, 10, 0.95});
  const GeneratedImages g = pipe.generate(req);
  EXPECT_EQ(test::json_tokens(read_json(dir / "t.json")), g.tokens);
  for (int i = 0; i < 4; ++i) {
    const fs::path p = dir / ("o/00000" + std::to_string(i) + ".png");
    const RgbImage want = to_rgb8(g.pixels.data() + i * 3 * g.height * g.width, static_cast<int>(g.height),
                                  static_cast<int>(g.width));
    EXPECT_EQ(read_png(p).pixels, want.pixels) << p;
    auto text = test::png_text(p);
    EXPECT_EQ(text["varps:parscale_n"], "3");
    EXPECT_EQ(text["varps:adapter"], "a.safetensors");
  }
}

// Every command that takes --adapter records it in its PNGs as generate
// does, and refuses one that does not fit the model before writing or
// listening.
TEST(CliAdapter, EveryCommandRecordsAndChecksItAlike) {
  TempDir dir;
  expect_ok(run_cli(dir, {"adapter", "init", "--preset", "tiny", "-P", "3", "-T", "2", "--out", "a.safetensors"}));
  expect_ok(run_cli_tiny(dir, {"generate", "--class", "1", "--out", "g", "--tokens-out", "in.json", "-q"}));
  expect_ok(run_cli_tiny(dir, {"edit", "--adapter", "a.safetensors", "--input-tokens", "in.json", "--box", "0,0,0.5,1",
                          "--class", "4", "--out", "e", "-q"}));
  expect_ok(run_cli_tiny(dir, {"sample", "--adapter", "a.safetensors", "--classes", "2:3", "--per-class", "1",
                          "--png", "--out", "s", "-q"}));
  for (const fs::path& png : {dir / "e/000000.png", dir / "s/png/000000.png"}) {
    auto text = test::png_text(png);
    EXPECT_EQ(text["varps:parscale_n"], "3") << png;
    EXPECT_EQ(text["varps:adapter"], "a.safetensors") << png;
  }
  const std::string unfit = (kSaln / "parscale_p2.safetensors").string();
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"edit", "--input-tokens", "in.json", "--box", "0,0,0.5,1", "--class", "4", "--out", "x"},
        std::vector<std::string>{"sample", "--classes", "2:3", "--per-class", "1", "--out", "x"},
        std::vector<std::string>{"bench", "--streams", "1", "--repeats", "1", "--out", "x"},
        std::vector<std::string>{"serve", "--port", "0"}}) {
    std::vector<std::string> with = args;
    with.insert(with.begin() + 1, {"--adapter", unfit});
    expect_error(run_cli_tiny(dir, with), 1, {"does not fit the model"});
    EXPECT_FALSE(fs::exists(dir / "x")) << args[0] << " wrote before the adapter was checked";
  }
}

TEST(CliAdapter, GenerateReproducesTheGoldenParScaleTokens) {
  TempDir dir;
  for (const char* ext : {"pth", "safetensors"}) {
    SCOPED_TRACE(ext);
    expect_ok(run_cli(dir, {"generate", "--var", (kSaln / (std::string("var.") + ext)).string(), "--vae",
                            (kSaln / (std::string("vae.") + ext)).string(), "--adapter",
                            (kSaln / "parscale_p3.safetensors").string(), "--class", "5,uncond", "--cfg", "1.5",
                            "--top-k", "1", "--top-p", "0", "--out", "o", "--tokens-out", "t.json", "-q"}));
    const auto tokens = test::json_tokens(read_json(dir / "t.json"));
    const Checkpoint golden = Checkpoint::open(kSaln / "golden.safetensors");
    ASSERT_EQ(tokens.size(), 2u);
    for (size_t s = 0; s < 4; ++s) {
      const TensorI64 ref = golden.read_i64("ps3_gen_cfg1p5_idx_s" + std::to_string(s));
      std::vector<int32_t> want(ref.data.begin(), ref.data.end());
      std::vector<int32_t> got = tokens[0][s];
      got.insert(got.end(), tokens[1][s].begin(), tokens[1][s].end());
      EXPECT_EQ(got, want) << "scale " << s;
    }
  }
}

TEST(CliAdapter, GenerateRefusesAdaptersThatDoNotFit) {
  TempDir dir;
  expect_error(run_cli_tiny(dir, {"generate", "--adapter", (kSaln / "parscale_p2.safetensors").string(), "--class", "1",
                             "--out", "o"}),
               1, {"does not fit the model", "blocks"});
  expect_ok(run_cli(dir, {"adapter", "init", "--preset", "d16", "-P", "2", "-T", "1", "--out", "d16.safetensors"}));
  expect_error(run_cli(dir, {"generate", "--var", (kSaln / "var.pth").string(), "--vae", (kSaln / "vae.pth").string(),
                             "--adapter", "d16.safetensors", "--class", "1", "--out", "o"}),
               1, {"d16.safetensors", "does not fit"});
  expect_error(run_cli_tiny(dir, {"generate", "--adapter", "missing.safetensors", "--class", "1", "--out", "o"}), 1,
               {"missing.safetensors"});
  expect_error(run_cli_tiny(dir, {"generate", "--adapter", (kSaln / "var.pth").string(), "--class", "1", "--out", "o"}), 1,
               {"safetensors"});
  EXPECT_FALSE(fs::exists(dir / "o")) << "nothing is written before the adapter is checked";
}

TEST(CliAdapter, BenchWithAnAdapterRunsPTimesTheRowsInOnePass) {
  TempDir dir;
  expect_ok(run_cli(dir, {"adapter", "init", "--preset", "tiny", "-P", "3", "-T", "2", "--out", "a.safetensors"}));
  expect_ok(run_cli_tiny(dir, {"bench", "--adapter", "a.safetensors", "--streams", "1,2", "--schedule", "batched",
                          "--warmup", "0", "--repeats", "3", "--out", "b", "-q"}));
  const Json doc = read_json(dir / "b" / "bench.json");
  EXPECT_NE(doc["model"]["adapter"].get<std::string>().find("P=3"), std::string::npos);
  ASSERT_EQ(doc["runs"].size(), 2u);
  for (const Json& run : doc["runs"]) {
    const int images = run["streams"].get<int>();
    for (const Json& passes : run["backbone_passes_per_scale"]) EXPECT_EQ(passes.get<int>(), 1);
    for (const Json& rows : run["rows_per_pass"]) EXPECT_EQ(rows.get<int>(), 3 * 2 * images);  // P · (cond + uncond)
    EXPECT_EQ(run["control_diversity"]["token_disagreement"].get<double>(), 0.0);
  }
}

TEST(CliAdapter, CompareParScaleAgainstAnotherModel) {
  TempDir dir;
  const test::CliRun r = run_cli_tiny(dir, {"bench", "--compare-parscale", "--streams", "1,2", "--larger", "tiny",
                                       "--prefix-tokens", "3", "--warmup", "0", "--repeats", "3", "--out", "c", "-q"});
  expect_ok(r);
  for (const char* f : {"compare.json", "compare.csv", "compare.md"}) EXPECT_TRUE(fs::exists(dir / "c" / f)) << f;
  EXPECT_NE(r.out.find("| model | ParScale P |"), std::string::npos) << r.out;
  const Json doc = read_json(dir / "c" / "compare.json");
  ASSERT_EQ(doc["entries"].size(), 4u);  // base, P=1, P=2, the other model
  const std::vector<int> streams = {0, 1, 2, 0};
  const std::vector<int> rows = {2, 2, 4, 2};  // cfg 4: conditional + unconditional, times P
  const uint64_t base_params = doc["entries"][0]["parameters"].get<uint64_t>();
  for (size_t i = 0; i < 4; ++i) {
    const Json& e = doc["entries"][i];
    SCOPED_TRACE(e["label"].get<std::string>());
    EXPECT_EQ(e["parscale_streams"].get<int>(), streams[i]);
    for (const Json& n : e["rows_per_pass"]) EXPECT_EQ(n.get<int>(), rows[i]);
    for (const Json& n : e["backbone_passes_per_scale"]) EXPECT_EQ(n.get<int>(), 1);
    EXPECT_EQ(e["latency_samples_ms"].size(), 3u);
    EXPECT_GT(e["peak_memory_bytes"].get<uint64_t>(), 0u);
    if (streams[i] > 0) {
      EXPECT_GT(e["parameters"].get<uint64_t>(), base_params) << "the adapter adds parameters";
    }
    for (const Json& f : e["flags"])
      EXPECT_TRUE(f["name"] == "spread_too_wide" || f["name"] == "latency_below_base") << f.dump();
  }
  EXPECT_EQ(doc["entries"][0]["label"], "tiny");
  EXPECT_EQ(doc["entries"][2]["label"], "tiny + ParScale P=2");
  EXPECT_EQ(doc["entries"][0]["increase_over_base"]["latency"].get<double>(), 0.0);
}

TEST(CliAdapter, CompareBadFlags) {
  TempDir dir;
  expect_error(run_cli_tiny(dir, {"bench", "--compare-parscale", "--adapter", "a.safetensors", "--out", "c"}), 2,
               {"--adapter"});
  expect_error(run_cli_tiny(dir, {"bench", "--compare-parscale", "--larger", "d99", "--out", "c"}), 2, {"d99"});
  expect_error(run_cli_tiny(dir, {"bench", "--compare-parscale", "--schedule", "sequential", "--out", "c"}), 2,
               {"--schedule"});
  expect_error(run_cli_tiny(dir, {"bench", "--compare-parscale", "--prefix-tokens", "-1", "--out", "c"}), 2,
               {"--prefix-tokens"});
  expect_error(run_cli_tiny(dir, {"bench", "--compare-parscale", "--images", "0", "--out", "c"}), 2, {"--images"});
  expect_error(run_cli_tiny(dir, {"bench", "--larger", "d20", "--out", "c"}), 2, {"--compare-parscale"});
}

}  // namespace
}  // namespace varps::test
