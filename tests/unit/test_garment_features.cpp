// The garment classifier behind the quality measures and bench's feature
// distance: it recognises the golden case's decoded test images, and the
// distance it gives streams is 0 for equal images and grows with difference.
#include <gtest/gtest.h>

#include <algorithm>

#include "bench/garment_features.hpp"
#include "golden/golden_case.hpp"
#include "unit/test_files.hpp"
#include "varps/bench.hpp"
#include "varps/builtin_models.hpp"
#include "varps/checkpoint.hpp"
#include "varps/error.hpp"

namespace varps::bench {
namespace {

// The labels of the test-split images 0..3 behind the golden case's teacher
// forcing (ankle boot, pullover, trouser, trouser).
constexpr int kTestLabels[] = {9, 2, 1, 1};

GarmentFeatures classifier() { return GarmentFeatures::load(find_builtin_model("fmnist").classifier); }

// One image of a [B, 3, 32, 32] batch in [-1, 1], mapped to [0, 1].
std::vector<float> image_01(const Tensor& t, int64_t i) {
  const int64_t n = 3 * 32 * 32;
  std::vector<float> img(t.ptr() + i * n, t.ptr() + (i + 1) * n);
  for (float& v : img) v = (v + 1.0f) * 0.5f;
  return img;
}

int argmax(const std::vector<float>& v) { return static_cast<int>(std::max_element(v.begin(), v.end()) - v.begin()); }

TEST(GarmentFeatures, RecognisesTheTokenizerReconstructionsOfTestImages) {
  const GarmentFeatures g = classifier();
  const testing::GoldenCase gc("fmnist");
  const Tensor imgs = gc.f32("dec_img");
  for (int64_t i = 0; i < 4; ++i) {
    std::vector<float> logits;
    const std::vector<float> f = g.features(image_01(imgs, i).data(), &logits);
    EXPECT_EQ(f.size(), static_cast<size_t>(GarmentFeatures::kFeatures));
    ASSERT_EQ(logits.size(), static_cast<size_t>(GarmentFeatures::kClasses));
    EXPECT_EQ(argmax(logits), kTestLabels[i]) << "image " << i;
  }
}

TEST(GarmentFeatures, FeatureDistanceIsZeroForEqualImagesAndGrowsWithDifference) {
  const GarmentFeatures g = classifier();
  const testing::GoldenCase gc("fmnist");
  const Tensor imgs = gc.f32("dec_img");
  StreamOutputs same;
  for (int i = 0; i < 2; ++i) {
    same.tokens.push_back({{0}});
    same.images.push_back(image_01(imgs, 2));
  }
  StreamOutputs trousers = same, mixed = same;
  trousers.images[1] = image_01(imgs, 3);  // another trouser
  mixed.images[1] = image_01(imgs, 0);     // an ankle boot
  EXPECT_EQ(diversity(same, &g).feature_distance, 0.0);
  const double near = diversity(trousers, &g).feature_distance, far = diversity(mixed, &g).feature_distance;
  EXPECT_GT(near, 0.0);
  EXPECT_GT(far, near);
  EXPECT_EQ(diversity(mixed).feature_distance, -1.0);  // no classifier: left out
}

TEST(GarmentFeatures, AnotherFileIsRefusedNamingTheTensor) {
  const testing::GoldenCase gc("tiny");
  try {
    GarmentFeatures::load(gc.dir / "var.safetensors");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("conv1.weight"), std::string::npos) << e.what();
  }
}

// The classifier's input standardisation lives in its file: without it, or
// with a value that is no number, the file is refused naming the key.
TEST(GarmentFeatures, MissingOrBadInputStatisticsAreRefusedNamingTheKey) {
  const Checkpoint ck = Checkpoint::open(find_builtin_model("fmnist").classifier);
  std::vector<Tensor> tensors;
  tensors.reserve(ck.tensors().size());
  std::vector<NamedTensor> named;
  for (const TensorRecord& r : ck.tensors()) {
    tensors.push_back(ck.read_f32(r));
    named.push_back({r.name, &tensors.back()});
  }
  const test::TempDir dir;
  const struct {
    std::map<std::string, std::string> metadata;
    std::string expected;
  } cases[] = {{{}, "metadata 'input_mean' is missing"},
               {{{"input_mean", "0.286"}}, "metadata 'input_std' is missing"},
               {{{"input_mean", "0.286"}, {"input_std", "0"}}, "'input_std' is '0', expected a finite number > 0"},
               {{{"input_mean", "grey"}, {"input_std", "0.353"}}, "'input_mean' is 'grey'"}};
  for (const auto& c : cases) {
    write_safetensors(dir / "clf.safetensors", named, c.metadata);
    try {
      GarmentFeatures::load(dir / "clf.safetensors");
      ADD_FAILURE() << "no error for " << c.expected;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(c.expected), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(ck.metadata().at("input_mean"), "0.286");  // the shipped file carries them
}

}  // namespace
}  // namespace varps::bench
