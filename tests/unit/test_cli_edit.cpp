// `varps edit` run as a separate process: agreement with the library API
// (bit for bit), kept tokens, masks given as a box or an image, streams,
// metadata, and one-line errors for bad input.
#include <gtest/gtest.h>

#include "unit/cli_run.hpp"
#include "unit/test_files.hpp"
#include "varps/checkpoint.hpp"
#include "varps/edit.hpp"
#include "varps/image.hpp"
#include "varps/pipeline.hpp"

namespace varps::test {
namespace {

namespace fs = std::filesystem;

const fs::path kSmall = fs::path(VARPS_TEST_DATA) / "golden" / "small";

// A 32×32 PNG for the small golden model: its decoded reference image.
RgbImage small_image() {
  const Checkpoint golden = Checkpoint::open(kSmall / "golden.safetensors");
  Tensor img = golden.read_f32("dec_img");  // [B, 3, 32, 32] in [-1, 1]
  for (float& v : img.data) v = (v + 1.0f) * 0.5f;
  return to_rgb8(img.ptr(), 32, 32);
}

// The image and box edit of the CLI equals the library's, token for token and
// pixel for pixel, and the kept tokens are the image's.
TEST(CliEdit, InpaintsAnImageAsTheLibraryDoes) {
  TempDir dir;
  write_png(dir / "in.png", small_image());
  const std::string var = (kSmall / "var.pth").string(), vae = (kSmall / "vae.pth").string();
  expect_ok(run_cli(dir, {"edit", "--var", var, "--vae", vae, "--image", "in.png", "--box", "0.25,0.25,0.75,0.75",
                          "--class", "uncond,3", "--seed", "5", "--cfg", "2", "--top-k", "50", "--out", "e",
                          "--tokens-out", "t.json", "--quiet"}));

  const Pipeline pipe = Pipeline::from_files(var, vae);
  const RgbImage rgb = read_png(dir / "in.png");
  const Tensor chw = rgb8_to_signed_chw(rgb);
  const TokenMaps input = pipe.tokenize(Tensor(Shape{1, 3, 32, 32}, chw.data))[0];
  const EditMask mask = box_mask({0.25, 0.25, 0.75, 0.75}, 8, false);
  const SamplingParams sp{2.0, 50, 0.95};
  const GeneratedImages want = pipe.edit({{{20, 5, sp}, input, mask}, {{3, 6, sp}, input, mask}});

  const auto got = json_tokens(read_json(dir / "t.json"));
  EXPECT_EQ(got, want.tokens);
  const auto keep = keep_per_scale(mask, pipe.var_config().patch_nums);
  for (size_t s = 0; s < keep.size(); ++s)
    for (size_t i = 0; i < keep[s].size(); ++i)
      if (keep[s][i]) {
        EXPECT_EQ(got[0][s][i], input[s][i]) << "scale " << s << " token " << i;
      }
  for (int i = 0; i < 2; ++i) {
    const fs::path p = dir / ("e/00000" + std::to_string(i) + ".png");
    EXPECT_EQ(read_png(p).pixels, to_rgb8(want.pixels.data() + i * 3 * 32 * 32, 32, 32).pixels) << p;
    auto text = png_text(p);
    EXPECT_EQ(text["varps:edit"], "inpaint");
    EXPECT_EQ(text["varps:box"], "0.25,0.25,0.75,0.75");
    EXPECT_EQ(text["varps:source"], "in.png");
    EXPECT_EQ(text["varps:seed"], std::to_string(5 + i));
    EXPECT_EQ(text["varps:top_k"], "50");
  }
  EXPECT_EQ(png_text(dir / "e/000000.png")["varps:class"], "20");
  EXPECT_EQ(png_text(dir / "e/000001.png")["varps:class"], "3");
}

// Token maps in, out-painting with streams: every output keeps the box's
// tokens of its own input; the streams of one edit continue the seeds.
TEST(CliEdit, OutpaintsTokenMapsWithStreams) {
  TempDir dir;
  expect_ok(run_cli_tiny(dir, {"generate", "--class", "1,2", "--out", "g", "--tokens-out", "in.json", "--quiet"}));
  expect_ok(run_cli_tiny(dir, {"edit", "--input-tokens", "in.json", "--box", "0,0,0.5,1", "--outpaint", "--class",
                          "4,uncond", "--streams", "2", "--seed", "30", "--out", "e", "--tokens-out", "t.json",
                          "--quiet"}));
  const auto in = json_tokens(read_json(dir / "in.json"));
  const nlohmann::json doc = read_json(dir / "t.json");
  const auto got = json_tokens(doc);
  ASSERT_EQ(got.size(), 4u);
  const auto keep = keep_per_scale(box_mask({0, 0, 0.5, 1}, 4, true), {1, 2, 3, 4});
  for (size_t e = 0; e < 4; ++e) {
    EXPECT_EQ(doc["images"][e]["seed"], 30 + e);
    EXPECT_EQ(doc["images"][e]["class"], e < 2 ? 4 : 10);
    for (size_t s = 0; s < keep.size(); ++s)
      for (size_t i = 0; i < keep[s].size(); ++i)
        if (keep[s][i]) {
          EXPECT_EQ(got[e][s][i], in[e / 2][s][i]) << "edit " << e << " scale " << s;
        }
  }
  EXPECT_NE(got[0], got[1]) << "two streams of one edit drew the same tokens";
  EXPECT_EQ(png_text(dir / "e/000002.png")["varps:source"], "in.json#1");
  EXPECT_EQ(png_text(dir / "e/000000.png")["varps:edit"], "outpaint");
}

// A mask image that is white exactly over the box edits as the box does.
TEST(CliEdit, AMaskImageOverTheBoxEditsAsTheBox) {
  TempDir dir;
  expect_ok(run_cli_tiny(dir, {"generate", "--class", "1", "--out", "g", "--tokens-out", "in.json", "--quiet"}));
  RgbImage mask{8, 8, std::vector<uint8_t>(8 * 8 * 3, 0)};
  for (int y = 2; y < 6; ++y)
    for (int x = 2; x < 6; ++x)
      for (int c = 0; c < 3; ++c) mask.pixels[(y * 8 + x) * 3 + c] = 255;
  write_png(dir / "mask.png", mask);
  const std::vector<std::string> common = {"edit", "--input-tokens", "in.json", "--class", "2", "--seed", "3",
                                           "--quiet"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = common;
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  };
  expect_ok(run_cli_tiny(dir, with({"--mask", "mask.png", "--out", "m", "--tokens-out", "m.json"})));
  expect_ok(run_cli_tiny(dir, with({"--box", "0.25,0.25,0.75,0.75", "--out", "b", "--tokens-out", "b.json"})));
  EXPECT_EQ(json_tokens(read_json(dir / "m.json")), json_tokens(read_json(dir / "b.json")));
  EXPECT_EQ(read_png(dir / "m/000000.png").pixels, read_png(dir / "b/000000.png").pixels);
  EXPECT_EQ(png_text(dir / "m/000000.png")["varps:mask"], "mask.png");
}

TEST(CliEdit, BadInputIsOneLineNamingWhatAndWhere) {
  TempDir dir;
  expect_ok(run_cli_tiny(dir, {"generate", "--class", "1,2", "--out", "g", "--tokens-out", "in.json", "--quiet"}));
  write_png(dir / "big.png", RgbImage{16, 16, std::vector<uint8_t>(16 * 16 * 3, 9)});
  write_png(dir / "wide.png", RgbImage{8, 4, std::vector<uint8_t>(8 * 4 * 3, 9)});
  const std::vector<std::string> box = {"--box", "0.25,0.25,0.75,0.75"};
  auto edit = [&](std::vector<std::string> args) {
    args.insert(args.begin(), "edit");
    args.insert(args.end(), {"--out", "o", "--quiet"});
    return run_cli_tiny(dir, args);
  };
  // usage: exit 2
  expect_error(edit({"--box", "0,0,1,1", "--class", "1"}), 2, {"--image or --input-tokens"});
  expect_error(edit({"--input-tokens", "in.json", "--class", "1"}), 2, {"--box or --mask"});
  expect_error(edit({"--input-tokens", "in.json", "--box", "0,0,1.5,1", "--class", "1"}), 2, {"--box", "1.5"});
  expect_error(edit({"--input-tokens", "in.json", "--box", "0.5,0,0.5,1", "--class", "1"}), 2, {"--box", "empty"});
  expect_error(edit({"--input-tokens", "in.json", "--box", "0,0,1", "--class", "1"}), 2, {"--box", "four"});
  expect_error(edit({"--input-tokens", "in.json", "--mask", "big.png", "--outpaint", "--class", "1"}), 2,
               {"--outpaint"});
  expect_error(edit({"--input-tokens", "in.json", "--box", "0,0,1,1", "--mask", "big.png", "--class", "1"}), 2,
               {"--mask"});
  expect_error(edit({"--input-tokens", "in.json", "--box", "0,0,1,1", "--class", "1,2,3"}), 2,
               {"holds 2 images", "not 3"});
  // runtime: exit 1
  expect_error(edit({"--input-tokens", "in.json", "--box", "0.01,0.01,0.05,0.05", "--class", "1"}), 1,
               {"covers no token", "4x4"});
  expect_error(edit({"--image", "big.png", "--box", "0,0,1,1", "--class", "1"}), 1, {"big.png", "16x16", "8x8"});
  expect_error(edit({"--image", "missing.png", "--box", "0,0,1,1", "--class", "1"}), 1, {"missing.png"});
  expect_error(edit({"--input-tokens", "in.json", "--mask", "big.png", "--class", "1"}), 1, {"big.png", "8x8"});
  expect_error(edit({"--input-tokens", "in.json", "--mask", "wide.png", "--class", "1"}), 1, {"wide.png", "8x4"});
  expect_error(edit(std::vector<std::string>{"--input-tokens", "in.json", "--class", "12", box[0], box[1]}), 1,
               {"class 12"});

  nlohmann::json doc = read_json(dir / "in.json");
  auto write_doc = [&](const nlohmann::json& d) { test::write_bytes(dir / "bad.json", d.dump()); };
  auto bad = [&](const std::vector<std::string>& needles) {
    expect_error(edit({"--input-tokens", "bad.json", box[0], box[1], "--class", "1"}), 1, needles);
  };
  nlohmann::json d = doc;
  d["patch_nums"] = {1, 2, 3, 5};
  write_doc(d);
  bad({"bad.json", "scales 1,2,3,5", "1,2,3,4"});
  d = doc;
  d["images"][1]["tokens"][2].erase(0);
  write_doc(d);
  bad({"bad.json", "image 1", "scale 2", "9 tokens"});
  d = doc;
  d["images"][0]["tokens"][3][5] = 64;
  write_doc(d);
  bad({"bad.json", "image 0", "scale 3", "token 64"});
  d = doc;
  d["images"][0]["tokens"].erase(3);
  write_doc(d);
  bad({"bad.json", "image 0", "3 token maps"});
  test::write_bytes(dir / "bad.json", "{\"patch_nums\": [1, 2");
  bad({"bad.json", "not valid JSON"});
  expect_error(edit({"--input-tokens", "nope.json", box[0], box[1], "--class", "1"}), 1, {"nope.json"});
}

// Found by fuzzing the tokens reader (tests/fuzz/fuzz_tokens_json.cpp).
TEST(CliEdit, HostileTokenFilesAreOneLineErrors) {
  TempDir dir;
  const std::string maps = R"([[0], [0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0, 0], )"
                           R"([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]])";
  auto edit = [&](const std::string& doc) {
    test::write_bytes(dir / "t.json", doc);
    return run_cli_tiny(dir, {"edit", "--input-tokens", "t.json", "--box", "0,0,1,1", "--class", "1", "--out", "o",
                         "--quiet"});
  };
  // 2^32 + 1 once wrapped to 1, so the tiny model's scales 1,2,3,4 matched;
  // 1e300 as an int is undefined.
  for (const char* first : {"4294967297", "1e300", "-1", "1.5", "\"1\""})
    expect_error(edit(std::string(R"({"patch_nums": [)") + first + R"(, 2, 3, 4], "images": [{"tokens": )" + maps +
                      "}]}"),
                 1, {"t.json", "\"patch_nums\" must be a list of positive integers"});
  // A token nested a million levels deep: printing it for the message once
  // recursed a million times and overflowed the stack.
  const std::string deep = std::string(1000000, '[') + "1" + std::string(1000000, ']');
  std::string doc = R"({"patch_nums": [1, 2, 3, 4], "images": [{"tokens": )" + maps + "}]}";
  doc.replace(doc.find("[[0]") + 1, 3, "[" + deep + "]");
  expect_error(edit(doc), 1, {"t.json", "image 0, scale 0: token (a list) is not an integer in [0, 64)"});
}

TEST(CliEdit, HelpExplainsTheModesAndShowsExamples) {
  TempDir dir;
  const CliRun r = run_cli(dir, {"edit", "--help"});
  expect_ok(r);
  for (const char* s : {"--image", "--input-tokens", "--box", "--mask", "--outpaint", "--class", "--streams",
                        "uncond", "white = generate", "Examples:", "Exit status"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s;
}

}  // namespace
}  // namespace varps::test
