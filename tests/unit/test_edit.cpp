// Edit masks (boxes, mask images, the masks per scale) and Pipeline::edit on
// the tiny model: kept tokens, streams, adapters and bad input. The official
// results are checked in golden/test_golden_edit.cpp.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "varps/adapter.hpp"
#include "varps/edit.hpp"
#include "varps/error.hpp"
#include "varps/pipeline.hpp"

namespace varps {
namespace {

const std::filesystem::path kData = std::filesystem::path(VARPS_TEST_DATA);

std::vector<float> keep_of(const std::vector<int>& rows) {
  std::vector<float> v;
  for (int r : rows)
    for (int b = 3; b >= 0; --b) v.push_back(static_cast<float>((r >> b) & 1));
  return v;
}

TEST(EditMask, BoxRoundsLikePythonHalvesToEven) {
  // side 4: 0.125·4 = 0.5 → 0, 0.625·4 = 2.5 → 2, 0.375·4 = 1.5 → 2, 0.875·4 = 3.5 → 4
  const EditMask m = box_mask({0.125, 0.375, 0.625, 0.875}, 4, /*outpaint=*/true);
  EXPECT_EQ(m.side, 4);
  EXPECT_EQ(m.keep, keep_of({0b0011, 0b0011, 0b0000, 0b0000}));
  const EditMask in = box_mask({0.125, 0.375, 0.625, 0.875}, 4, /*outpaint=*/false);
  EXPECT_EQ(in.keep, keep_of({0b1100, 0b1100, 0b1111, 0b1111}));
}

TEST(EditMask, BadBoxesAreRefusedWithTheBox) {
  for (const EditBox& b : {EditBox{-0.1, 0, 1, 1}, EditBox{0, 0, 1.5, 1}, EditBox{0.5, 0, 0.5, 1},
                           EditBox{0, 0.7, 1, 0.2}, EditBox{0.01, 0.01, 0.02, 0.02}}) {
    try {
      box_mask(b, 16, false);
      ADD_FAILURE() << "accepted " << b.y0 << "," << b.x0 << "," << b.y1 << "," << b.x1;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("edit box"), std::string::npos) << e.what();
    }
  }
}

// A mask image resized to the last token map and then to every scale, against
// PyTorch's bilinear interpolation (tests/data/edit/make_mask_reference.py).
TEST(EditMask, MaskImageResizesAsPyTorchDoes) {
  const nlohmann::json ref = nlohmann::json::parse(std::ifstream(kData / "edit" / "mask_resize.json"));
  RgbImage img{32, 32, std::vector<uint8_t>(32 * 32 * 3)};
  for (int y = 0; y < 32; ++y)
    for (int x = 0; x < 32; ++x)
      for (int c = 0; c < 3; ++c) img.pixels[(y * 32 + x) * 3 + c] = static_cast<uint8_t>((7 * y + 13 * x) % 256);
  const EditMask m = mask_from_image(img, 8);
  EXPECT_EQ(m.keep, ref["keep_8x8"].get<std::vector<float>>());
  const std::vector<int> pn = {1, 2, 3, 4, 5, 6, 8};
  const auto keep = keep_per_scale(m, pn);
  int kept_somewhere = 0, generated_somewhere = 0;
  for (size_t s = 0; s < pn.size(); ++s) {
    const auto r = ref["scales"][std::to_string(pn[s])].get<std::vector<float>>();
    ASSERT_EQ(keep[s].size(), r.size());
    for (size_t i = 0; i < r.size(); ++i) {
      const uint8_t want = pn[s] * pn[s] <= 3 ? 1 : (r[i] > 0.5f ? 1 : 0);
      EXPECT_EQ(keep[s][i], want) << "scale " << pn[s] << ", token " << i << ", torch " << r[i];
      kept_somewhere += keep[s][i];
      generated_somewhere += 1 - keep[s][i];
    }
  }
  EXPECT_GT(kept_somewhere, 0);
  EXPECT_GT(generated_somewhere, 0);
}

TEST(EditMask, SmallScalesKeepEverythingAndTheMaskMustFitTheLastMap) {
  const EditMask all_generated{4, std::vector<float>(16, 0.0f)};
  const auto keep = keep_per_scale(all_generated, {1, 2, 3, 4});
  EXPECT_EQ(keep[0], std::vector<uint8_t>(1, 1));
  EXPECT_EQ(keep[1], std::vector<uint8_t>(4, 0));  // 4 tokens: resized, not kept whole
  EXPECT_EQ(keep[3], std::vector<uint8_t>(16, 0));
  EXPECT_THROW(keep_per_scale(all_generated, {1, 2, 3, 5}), Error);
  EXPECT_THROW(mask_from_image(RgbImage{8, 4, std::vector<uint8_t>(8 * 4 * 3)}, 4), Error);
  for (int64_t side : {int64_t{0}, int64_t{-3}, int64_t{1} << 40})
    EXPECT_THROW(mask_from_image(RgbImage{4, 4, std::vector<uint8_t>(4 * 4 * 3)}, side), Error) << side;
  EXPECT_THROW(mask_from_image(RgbImage{4, 4, std::vector<uint8_t>(5)}, 4), Error);
}

class TinyEdit : public ::testing::Test {
 protected:
  Pipeline pipe_ = Pipeline::from_preset("tiny");
  TokenMaps image_ = pipe_.generate({{3, 5, SamplingParams{}}}).tokens[0];
  std::vector<int> pn_ = pipe_.var_config().patch_nums;
};

TEST_F(TinyEdit, KeptTokensAreTheInputsAndTheBoxIsRegenerated) {
  const EditMask mask = box_mask({0.25, 0.25, 0.75, 0.75}, pn_.back(), false);
  const auto keep = keep_per_scale(mask, pn_);
  int changed = 0;
  for (uint64_t seed = 0; seed < 6; ++seed) {
    const GeneratedImages out = pipe_.edit({{{1, seed, SamplingParams{}}, image_, mask}});
    for (size_t s = 0; s < pn_.size(); ++s)
      for (size_t i = 0; i < keep[s].size(); ++i) {
        if (keep[s][i]) {
          EXPECT_EQ(out.tokens[0][s][i], image_[s][i]) << "scale " << s << " token " << i;
        } else {
          changed += out.tokens[0][s][i] != image_[s][i];
        }
      }
  }
  EXPECT_GT(changed, 0) << "the generated box never differs from the input";
}

TEST_F(TinyEdit, AMaskThatKeepsEverythingReconstructsTheInput) {
  const EditMask all{pn_.back(), std::vector<float>(static_cast<size_t>(pn_.back() * pn_.back()), 1.0f)};
  const GeneratedImages out = pipe_.edit({{{7, 1, SamplingParams{}}, image_, all}});
  EXPECT_EQ(out.tokens[0], image_);
  const GeneratedImages plain = pipe_.generate({{3, 5, SamplingParams{}}});
  EXPECT_EQ(out.pixels, plain.pixels);  // the same tokens decode to the same image
}

TEST_F(TinyEdit, WorksThroughAParScaleAdapter) {
  const EditMask mask = box_mask({0, 0, 0.5, 1}, pn_.back(), false);
  const auto keep = keep_per_scale(mask, pn_);
  pipe_.attach_adapter(ParScaleAdapter::random_init(pipe_.var_config(), 3, 2, 7));
  const GeneratedImages out = pipe_.edit({{{2, 4, SamplingParams{}}, image_, mask}});
  ASSERT_EQ(out.count, 1);
  for (size_t s = 0; s < pn_.size(); ++s)
    for (size_t i = 0; i < keep[s].size(); ++i)
      if (keep[s][i]) {
        EXPECT_EQ(out.tokens[0][s][i], image_[s][i]);
      }
}

TEST_F(TinyEdit, InputsThatDoNotFitAreRefusedNamingTheEditAndScale) {
  const EditMask mask = box_mask({0.25, 0.25, 0.75, 0.75}, pn_.back(), false);
  const auto expect_refused = [&](const std::vector<EditRequest>& edits, const std::string& needle) {
    try {
      pipe_.edit(edits);
      ADD_FAILURE() << "accepted; expected an error with '" << needle << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  TokenMaps short_map = image_;
  short_map[2].pop_back();
  expect_refused({{{1, 0, {}}, image_, mask}, {{1, 0, {}}, short_map, mask}}, "edit 1: input token map of scale 2");
  TokenMaps out_of_range = image_;
  out_of_range[1][0] = 64;
  expect_refused({{{1, 0, {}}, out_of_range, mask}}, "outside the codebook");
  expect_refused({{{1, 0, {}}, TokenMaps(image_.begin(), image_.end() - 1), mask}}, "3 token maps, the model 4");
  expect_refused({{{1, 0, {}}, image_, EditMask{8, std::vector<float>(64, 1.0f)}}}, "edit 0: edit mask is 8x8");
  expect_refused({{{99, 0, {}}, image_, mask}}, "class");
}

}  // namespace
}  // namespace varps
