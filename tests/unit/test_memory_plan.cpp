// What a request holds in memory: the decoder runs a bounded number of
// images at a time, a generating pipeline does not hold the VQVAE encoder,
// and the plan bounds the arrays the backend hands out, tightly.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>

#include <filesystem>

#include "backend.hpp"
#include "model/vqvae.hpp"
#include "model/weights.hpp"
#include "test_files.hpp"
#include "varps/adapter.hpp"
#include "varps/checkpoint.hpp"
#include "varps/config.hpp"
#include "varps/pipeline.hpp"

namespace varps {
namespace {

const std::filesystem::path kGolden = std::filesystem::path(VARPS_TEST_DATA) / "golden" / "saln";

std::vector<float> host(Backend& be, const FeatureMap& m) {
  std::vector<float> v(m.size());
  be.download(m.data.data(), v.size(), v.data());
  return v;
}

// The tiny tokenizer with the released one's shape where memory peaks: the
// two full-resolution levels have the same width.
VaeConfig equal_top_levels() {
  VaeConfig c = preset_vae_config("tiny");
  c.ch_mult = {1, 1};
  return c;
}

struct TinyVae {
  std::unique_ptr<Backend> be = make_cpu_backend(2);
  std::unique_ptr<WeightSource> w = random_weights(3, "test");
  Vqvae vae{*be, equal_top_levels(), *w};

  FeatureMap latent(int64_t n, int64_t S) {
    Tensor t({n, vae.config().cvae, S, S});
    fill_uniform(t, 5, "latent", 1.0f);
    FeatureMap m{be->upload(t), n, t.shape[1], S, S};
    return m;
  }
};

TEST(DecoderPasses, ImagesInPassesDecodeAsInOne) {
  TinyVae t;
  const FeatureMap f = t.latent(5, 4);
  const std::vector<float> whole = host(*t.be, t.vae.decode(f, 5));
  for (int64_t per_pass : {1, 2, 4}) {  // 2 and 4 leave a short last pass
    SCOPED_TRACE(per_pass);
    const FeatureMap img = t.vae.decode(f, per_pass);
    EXPECT_EQ(img.n, 5);
    EXPECT_EQ(host(*t.be, img), whole);
  }
  EXPECT_CONTAINS(test::error_of([&] { t.vae.decode(f, 0); }), "at least one image");
}

// The decoder's arena holds the per-image count (and its padding), its
// passes allocate nothing, and their maps reach the count: it is what the
// layers need, and an arena a granule short of what they reach refuses
// them.
TEST(DecoderPasses, OneImageHoldsItsCountedMaps) {
  TinyVae t;
  const int64_t S = 4, images = 3;
  const FeatureMap f = t.latent(images, S);
  const uint64_t counted = t.vae.decoder_map_bytes_per_image(S);
  const uint64_t before = t.be->device_memory().in_use;
  MapArena arena = t.vae.new_decoder_arena(S, 1);
  const FeatureMap img = t.vae.new_image_map(f);
  EXPECT_EQ(t.be->device_memory().in_use - before, t.vae.decoder_arena_bytes(S, 1) + img.size() * sizeof(float));
  EXPECT_LE(t.vae.decoder_arena_bytes(S, 1), counted + 4 * MapArena::kAlign * sizeof(float));
  t.be->reset_peak_memory();
  for (const Vqvae::DecoderPass& pass : Vqvae::decoder_passes(f, img, 1))
    t.vae.decode_pass(pass.f_hat, arena, pass.img);
  EXPECT_EQ(t.be->device_memory().peak, t.be->device_memory().in_use) << "a pass allocated";
  EXPECT_EQ(host(*t.be, img), host(*t.be, t.vae.decode(f, images)));
  // The maps reach their count (the rest of it is the norm's statistics).
  EXPECT_GE((arena.high_water() + 2 * Vqvae::kGroupNormGroups) * sizeof(float), counted);

  MapArena short_one(*t.be, arena.high_water() - 5 * MapArena::kAlign, 4, 2 * Vqvae::kGroupNormGroups);
  ASSERT_LT(short_one.capacity(), arena.high_water());
  const auto pass = Vqvae::decoder_passes(f, img, 1).front();
  EXPECT_CONTAINS(test::error_of([&] { t.vae.decode_pass(pass.f_hat, short_one, pass.img); }), "map arena: ");

  // The pass size follows from the count.
  EXPECT_EQ(t.vae.decode_images_per_pass(S, images), images) << "tiny maps: every image in one pass";
  const int64_t fit = static_cast<int64_t>(Vqvae::kDecoderPassBytes / counted);
  EXPECT_EQ(t.vae.decode_images_per_pass(S, fit + 10), fit);
  EXPECT_EQ(t.vae.decode_images_per_pass(1 << 12, 2), 1) << "a huge latent still decodes, one image at a time";
}

// What a backend holds of the encoder's tensors: its convolution weights in
// the backend's layout for them, the rest as float32.
uint64_t encoder_bytes(const Checkpoint& ckpt, const Backend& be) {
  uint64_t n = 0;
  for (const TensorRecord& r : ckpt.tensors())
    if (r.name.rfind("encoder.", 0) == 0 || r.name.rfind("quant_conv.", 0) == 0)
      n += r.shape.size() == 4 ? be.matrix_bytes(r.shape) : be.array_bytes(static_cast<uint64_t>(numel(r.shape)), sizeof(float));
  return n;
}

TEST(GenerationPipeline, HoldsNoEncoder) {
  PipelineOptions with_encoder{2};
  PipelineOptions without = with_encoder;
  without.vae_encoder = false;
  const Pipeline full = Pipeline::from_files(kGolden / "var.safetensors", kGolden / "vae.safetensors", with_encoder);
  const Pipeline gen = Pipeline::from_files(kGolden / "var.safetensors", kGolden / "vae.safetensors", without);
  const auto req = expand_streams({3}, 2, 9, SamplingParams{});
  const Checkpoint vae = Checkpoint::open(kGolden / "vae.safetensors");
  const uint64_t saved = encoder_bytes(vae, *make_cpu_backend(1));
  ASSERT_GT(saved, 0u);
  EXPECT_EQ(full.plan_memory(req).weights - gen.plan_memory(req).weights, saved);
  // Parameters count the model, not what is held: the CPU holds float32 and
  // pads the last panel of its packed weights (by 5.6 % on this model, whose
  // 8-channel convolutions get 12-row panels; 0.15 % for d16 and its VQVAE).
  // The encoder counts whether it is loaded or not.
  const uint64_t held = full.plan_memory(req).weights, counted = full.parameters() * sizeof(float);
  EXPECT_LE(counted, held);
  EXPECT_LT(held - counted, held / 10);
  EXPECT_EQ(gen.parameters(), full.parameters());
  const GeneratedImages a = full.generate(req), b = gen.generate(req);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.pixels, b.pixels);
  const std::string e = test::error_of([&] { gen.encode(Tensor({1, 3, 16, 16})); });
  EXPECT_CONTAINS(e, "without the VQVAE encoder");
}

// The arrays of a request (beside the weights) stay within the plan's KV
// cache and activations less the backend's workspace (on the CPU an im2col
// band, not an array), and fall short of them by less than 1 KiB: the
// padding of a few small arrays. So the plan neither leaves out nor
// invents an array; the decoder's arena, which lies in the KV cache where
// that holds it, included.
TEST(MemoryPlan, BoundsTheArraysOfARequestTightly) {
  Pipeline pipe = Pipeline::from_preset("tiny", PipelineOptions{2});
  auto check = [&](const std::vector<ImageRequest>& req) {
    const MemoryPlan plan = pipe.plan_memory(req);
    pipe.release_cached_memory();
    const uint64_t weights = pipe.device_memory().in_use;
    pipe.reset_peak_device_memory();
    pipe.generate(req);
    const uint64_t held = pipe.device_memory().peak - weights;
    const uint64_t planned = plan.kv_cache + plan.activations - plan.workspace;
    EXPECT_LE(held, planned);
    EXPECT_LT(planned - held, 1024u);
  };
  for (int P : {1, 4, 8}) {
    SCOPED_TRACE(P);
    check(expand_streams({5}, P, 11, SamplingParams{2.0, 20, 0.9}));
  }
  pipe.attach_adapter(ParScaleAdapter::random_init(pipe.var_config(), 4, 3, 1));
  SCOPED_TRACE("ParScale P=4");
  check(expand_streams({5, 6}, 1, 11, SamplingParams{2.0, 20, 0.9}));
}

TEST(MemoryPlan, RequestsBeyondAllMemoryAreRefusedBeforeRunning) {
  const Pipeline pipe = Pipeline::from_preset("tiny", PipelineOptions{1});
  // Enough streams to plan twice this machine's physical memory.
  const uint64_t phys =
      static_cast<uint64_t>(::sysconf(_SC_PHYS_PAGES)) * static_cast<uint64_t>(::sysconf(_SC_PAGE_SIZE));
  const uint64_t per_1000 = pipe.plan_memory(expand_streams({1}, 1000, 0, SamplingParams{})).total();
  const int streams = static_cast<int>(std::max<uint64_t>(1000000, 2 * phys / per_1000 * 1000));
  const std::vector<ImageRequest> many = expand_streams({1}, streams, 0, SamplingParams{});
  ASSERT_GT(pipe.plan_memory(many).total(), phys);
  const std::string e = test::error_of([&] { pipe.generate(many); });
  EXPECT_CONTAINS(e, "request needs ");
  EXPECT_CONTAINS(e, "for " + std::to_string(streams) + " images, this machine has ");
  // Sequential runs hold one image at a time: the same requests plan small,
  // and a request that fits runs.
  EXPECT_LT(pipe.plan_memory(many, Schedule::Sequential).total(), uint64_t{1} << 30);
  EXPECT_EQ(pipe.generate(expand_streams({1}, 2, 0, SamplingParams{})).count, 2);
}

}  // namespace
}  // namespace varps

namespace varps {
namespace {

TEST(BytesText, BinaryUnitsWithOneDecimal) {
  EXPECT_EQ(bytes_text(0), "0 B");
  EXPECT_EQ(bytes_text(1023), "1023 B");
  EXPECT_EQ(bytes_text(1536), "1.5 KiB");
  EXPECT_EQ(bytes_text(uint64_t{3} << 30), "3.0 GiB");
  EXPECT_EQ(bytes_text(uint64_t{5} << 50), "5.0 PiB");
}

}  // namespace
}  // namespace varps
