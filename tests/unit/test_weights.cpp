// A checkpoint whose tensors do not fit the model is refused with every
// missing, unexpected and mis-shaped tensor named, with both shapes.
#include <gtest/gtest.h>

#include <functional>

#include "unit/test_files.hpp"
#include "varps/checkpoint.hpp"
#include "varps/error.hpp"
#include "varps/pipeline.hpp"

namespace varps {
namespace {

const std::filesystem::path kTiny = std::filesystem::path(VARPS_TEST_DATA) / "golden" / "tiny";

// Copies a golden checkpoint through `edit`, which may drop, reshape or add
// tensors, into a safetensors file.
std::filesystem::path edited_copy(const test::TempDir& dir, const std::string& name,
                                  const std::function<void(std::vector<std::pair<std::string, Tensor>>&)>& edit) {
  const Checkpoint src = Checkpoint::open(kTiny / name);
  std::vector<std::pair<std::string, Tensor>> f32;
  std::vector<std::pair<std::string, TensorI64>> i64;
  for (const auto& rec : src.tensors()) {
    if (rec.dtype == DType::I64)
      i64.emplace_back(rec.name, src.read_i64(rec));
    else
      f32.emplace_back(rec.name, src.read_f32(rec));
  }
  edit(f32);
  std::vector<NamedTensor> all;
  for (auto& [n, t] : f32) all.push_back({n, &t, nullptr});
  for (auto& [n, t] : i64) all.push_back({n, nullptr, &t});
  const auto out = dir / ("edited_" + name + ".safetensors");
  write_safetensors(out, all);
  return out;
}

std::string load_error(const std::filesystem::path& var, const std::filesystem::path& vae) {
  return test::error_of([&] { Pipeline::from_files(var, vae, PipelineOptions{1}); });
}

TEST(WeightValidation, NamesMissingTensors) {
  test::TempDir dir;
  const auto var = edited_copy(dir, "var.pth", [](auto& ts) {
    std::erase_if(ts, [](const auto& t) { return t.first == "blocks.1.ffn.fc2.bias"; });
  });
  const std::string err = load_error(var, kTiny / "vae.pth");
  EXPECT_NE(err.find("missing tensor 'blocks.1.ffn.fc2.bias' (expected [128])"), std::string::npos) << err;
  EXPECT_NE(err.find(var.string()), std::string::npos) << err;
}

TEST(WeightValidation, NamesMisShapedTensorsWithBothShapes) {
  test::TempDir dir;
  const auto var = edited_copy(dir, "var.pth", [](auto& ts) {
    for (auto& [n, t] : ts)
      if (n == "blocks.0.attn.proj.weight") t = Tensor({128, 64});
  });
  const std::string err = load_error(var, kTiny / "vae.pth");
  EXPECT_NE(err.find("tensor 'blocks.0.attn.proj.weight' has shape [128, 64], expected [128, 128]"),
            std::string::npos)
      << err;
}

TEST(WeightValidation, NamesUnexpectedTensorsAndReportsAllProblemsAtOnce) {
  test::TempDir dir;
  const auto vae = edited_copy(dir, "vae.pth", [](auto& ts) {
    ts.emplace_back("decoder.extra.weight", Tensor({3}));
    std::erase_if(ts, [](const auto& t) { return t.first == "decoder.norm_out.bias"; });
  });
  const std::string err = load_error(kTiny / "var.pth", vae);
  EXPECT_NE(err.find("unexpected tensor 'decoder.extra.weight' [3]"), std::string::npos) << err;
  EXPECT_NE(err.find("missing tensor 'decoder.norm_out.bias'"), std::string::npos) << err;
  EXPECT_EQ(err.find('\n'), std::string::npos) << "one line";
}

TEST(WeightValidation, RefusesSwappedCheckpoints) {
  const std::string err = load_error(kTiny / "vae.pth", kTiny / "var.pth");
  EXPECT_NE(err.find("not a VAR checkpoint"), std::string::npos) << err;
}

TEST(WeightValidation, RefusesAVaeThatDoesNotFitTheVar) {
  const auto small = std::filesystem::path(VARPS_TEST_DATA) / "golden" / "small";
  const std::string err = load_error(kTiny / "var.pth", small / "vae.pth");
  EXPECT_NE(err.find("does not fit"), std::string::npos) << err;
}

}  // namespace
}  // namespace varps
