// The trained ParScale adapters shipped with the built-in depth-4 model: each
// fits it, changes its images (the streams are used), and the garments they
// give are recognisable to the classifier behind the quality measures.
#include <gtest/gtest.h>

#include <algorithm>

#include "bench/garment_features.hpp"
#include "varps/adapter.hpp"
#include "varps/builtin_models.hpp"
#include "varps/pipeline.hpp"

namespace varps {
namespace {

constexpr int kClasses = 10;
constexpr int kPerClass = 2;

std::filesystem::path adapter_file(int streams) {
  std::string name = "parscale_d4_p";
  name += std::to_string(streams);
  name += ".safetensors";
  return find_builtin_model("fmnist-d4").var.parent_path() / name;
}

GeneratedImages garments(const Pipeline& pipe) {
  std::vector<ImageRequest> req;
  for (int c = 0; c < kClasses; ++c)
    for (int i = 0; i < kPerClass; ++i) req.push_back({c, static_cast<uint64_t>(c * kPerClass + i), {1.5, 900, 0.96}});
  return pipe.generate(req);
}

int recognised(const GeneratedImages& out) {
  const bench::GarmentFeatures clf = bench::GarmentFeatures::load(find_builtin_model("fmnist").classifier);
  const size_t n = 3 * 32 * 32;
  int right = 0;
  for (int i = 0; i < kClasses * kPerClass; ++i) {
    std::vector<float> logits;
    clf.features(out.pixels.data() + i * n, &logits);
    right += std::max_element(logits.begin(), logits.end()) - logits.begin() == i / kPerClass;
  }
  return right;
}

class TrainedAdapter : public ::testing::TestWithParam<int> {};

TEST_P(TrainedAdapter, ChangesThePlainModelsImagesAndGivesRecognisableGarments) {
  const BuiltinModel d4 = find_builtin_model("fmnist-d4");
  PipelineOptions opts;
  opts.threads = 1;  // a model this small gains nothing from more, and the suite runs tests side by side
  const Pipeline plain = Pipeline::from_files(d4.var, d4.vae, opts);
  Pipeline streams = Pipeline::from_files(d4.var, d4.vae, opts);
  const ParScaleAdapter adapter = ParScaleAdapter::load(adapter_file(GetParam()));
  EXPECT_EQ(adapter.streams, GetParam());
  streams.attach_adapter(adapter);
  const GeneratedImages with = garments(streams), without = garments(plain);
  EXPECT_NE(with.tokens, without.tokens) << "the adapter left every token of the plain model's images as it was";
  // The plain depth-4 model gets 17 of these 20 right, and so do the trained
  // adapters 17 to 19; one that broke the backbone, or was read wrongly,
  // gives noise, which the classifier gets right about as often as chance.
  EXPECT_GE(recognised(with), 14) << "of " << kClasses * kPerClass;
}

std::string streams_name(const ::testing::TestParamInfo<int>& info) {
  std::string name = "P";
  name += std::to_string(info.param);
  return name;
}

INSTANTIATE_TEST_SUITE_P(Fmnist, TrainedAdapter, ::testing::Values(1, 2, 4, 8), streams_name);

}  // namespace
}  // namespace varps
