// ParScale adapters: the file format and its validation, the fit against a
// model, random initialisation, and the engine's aggregated streams
// (weights on the simplex above the floor, P = 1 equivalence, batch
// invariance, counters and memory plan).
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "backend.hpp"
#include "test_files.hpp"
#include "varps/adapter.hpp"
#include "varps/checkpoint.hpp"
#include "varps/pipeline.hpp"

namespace varps {
namespace {

using test::error_of;
using test::TempDir;

const std::filesystem::path kGolden = std::filesystem::path(VARPS_TEST_DATA) / "golden" / "saln";

Pipeline tiny() { return Pipeline::from_preset("tiny", PipelineOptions{2}); }

// The tensors of `a` as written by save(), for building broken files.
struct AdapterFile {
  std::map<std::string, Tensor> tensors;
  std::map<std::string, std::string> metadata;

  explicit AdapterFile(const ParScaleAdapter& a) {
    for (int b = 0; b < a.depth(); ++b) {
      tensors["blocks." + std::to_string(b) + ".attn.prefix_k"] = a.prefix_k[b];
      tensors["blocks." + std::to_string(b) + ".attn.prefix_v"] = a.prefix_v[b];
    }
    tensors["aggregate.0.weight"] = a.aggregate0_w;
    tensors["aggregate.0.bias"] = a.aggregate0_b;
    tensors["aggregate.2.weight"] = a.aggregate2_w;
    tensors["aggregate.2.bias"] = a.aggregate2_b;
    metadata = {{"parscale_n", std::to_string(a.streams)},
                {"parscale_n_tokens", std::to_string(a.prefix_tokens)},
                {"parscale_attn_smooth", "0.01"}};
  }
  std::filesystem::path write(const TempDir& dir, const std::string& name = "adapter.safetensors") const {
    std::vector<NamedTensor> named;
    for (const auto& [n, t] : tensors) named.push_back({n, &t, nullptr});
    const auto path = dir / name;
    write_safetensors(path, named, metadata);
    return path;
  }
};

ParScaleAdapter tiny_adapter(int P, int T, uint64_t seed = 7) {
  return ParScaleAdapter::random_init(preset_var_config("tiny"), P, T, seed);
}

// ---- the file ----

TEST(AdapterFile, GoldenAdaptersLoadWithTheirMetadata) {
  const ParScaleAdapter a = ParScaleAdapter::load(kGolden / "parscale_p3.safetensors");
  EXPECT_EQ(a.streams, 3);
  EXPECT_EQ(a.prefix_tokens, 4);
  EXPECT_DOUBLE_EQ(a.smooth, 0.01);
  EXPECT_EQ(a.depth(), 3);
  EXPECT_EQ(a.heads(), 3);
  EXPECT_EQ(a.head_dim(), 16);
  EXPECT_EQ(a.embed_dim(), 48);
  EXPECT_EQ(a.aggregate0_w.shape, (Shape{48, 144}));
}

TEST(AdapterFile, SaveThenLoadIsExact) {
  TempDir dir;
  const ParScaleAdapter a = tiny_adapter(3, 5);
  a.save(dir / "a.safetensors");
  const ParScaleAdapter b = ParScaleAdapter::load(dir / "a.safetensors");
  EXPECT_EQ(b.streams, 3);
  EXPECT_EQ(b.prefix_tokens, 5);
  EXPECT_EQ(b.smooth, a.smooth);
  ASSERT_EQ(b.depth(), a.depth());
  for (int i = 0; i < a.depth(); ++i) {
    EXPECT_EQ(b.prefix_k[i].data, a.prefix_k[i].data);
    EXPECT_EQ(b.prefix_v[i].data, a.prefix_v[i].data);
  }
  EXPECT_EQ(b.aggregate0_w.data, a.aggregate0_w.data);
  EXPECT_EQ(b.aggregate2_b.data, a.aggregate2_b.data);
}

TEST(AdapterFile, RandomInitIsSeededAndStartsUniform) {
  const ParScaleAdapter a = tiny_adapter(4, 3, 1), b = tiny_adapter(4, 3, 1), c = tiny_adapter(4, 3, 2);
  EXPECT_EQ(a.prefix_k[0].data, b.prefix_k[0].data);
  EXPECT_NE(a.prefix_k[0].data, c.prefix_k[0].data);
  EXPECT_NE(a.prefix_k[0].data, a.prefix_v[0].data);
  for (float v : a.aggregate2_w.data) EXPECT_EQ(v, 0.0f);
  for (float v : a.aggregate2_b.data) EXPECT_EQ(v, 0.0f);
  EXPECT_CONTAINS(a.origin, "untrained");
  EXPECT_CONTAINS(error_of([] { tiny_adapter(0, 3); }), "streams");
  EXPECT_CONTAINS(error_of([] { tiny_adapter(2, -1); }), "prefix tokens");
}

TEST(AdapterFile, MetadataMustBePresentAndValid) {
  TempDir dir;
  const AdapterFile good(tiny_adapter(2, 3));
  for (const char* key : {"parscale_n", "parscale_n_tokens", "parscale_attn_smooth"}) {
    AdapterFile f = good;
    f.metadata.erase(key);
    const std::string e = error_of([&] { ParScaleAdapter::load(f.write(dir)); });
    EXPECT_CONTAINS(e, std::string("no '") + key + "'");
    EXPECT_CONTAINS(e, "adapter.safetensors");
  }
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"parscale_n", "0"}, {"parscale_n", "two"}, {"parscale_n", "2.5"}, {"parscale_n", "-1"},
      {"parscale_n_tokens", "-3"}, {"parscale_attn_smooth", "1.5"}, {"parscale_attn_smooth", "nan"},
      {"parscale_attn_smooth", "0.01x"}};
  for (const auto& [key, value] : bad) {
    AdapterFile f = good;
    f.metadata[key] = value;
    const std::string e = error_of([&] { ParScaleAdapter::load(f.write(dir)); });
    EXPECT_CONTAINS(e, "'" + key + "' is '" + value + "'");
  }
}

TEST(AdapterFile, MetadataInconsistentWithShapesIsAnError) {
  TempDir dir;
  AdapterFile f(tiny_adapter(2, 3));
  f.metadata["parscale_n"] = "3";  // tensors say 2
  std::string e = error_of([&] { ParScaleAdapter::load(f.write(dir)); });
  EXPECT_CONTAINS(e, "blocks.0.attn.prefix_k");
  EXPECT_CONTAINS(e, "parscale_n = 3");

  AdapterFile g(tiny_adapter(2, 3));
  g.metadata["parscale_n_tokens"] = "4";
  e = error_of([&] { ParScaleAdapter::load(g.write(dir)); });
  EXPECT_CONTAINS(e, "parscale_n_tokens = 4");
}

TEST(AdapterFile, TensorsMustBeCompleteAndConsistent) {
  TempDir dir;
  const AdapterFile good(tiny_adapter(2, 3));
  {
    AdapterFile f = good;
    f.tensors.erase("blocks.1.attn.prefix_v");
    EXPECT_CONTAINS(error_of([&] { ParScaleAdapter::load(f.write(dir)); }), "missing tensor 'blocks.1.attn.prefix_v'");
  }
  {
    AdapterFile f = good;
    f.tensors.erase("aggregate.2.bias");
    EXPECT_CONTAINS(error_of([&] { ParScaleAdapter::load(f.write(dir)); }), "missing tensor 'aggregate.2.bias'");
  }
  {
    AdapterFile f = good;
    f.tensors["blocks.0.attn.proj.weight"] = Tensor({2, 2});
    EXPECT_CONTAINS(error_of([&] { ParScaleAdapter::load(f.write(dir)); }),
                    "unexpected tensor 'blocks.0.attn.proj.weight' [2, 2]");
  }
  {
    AdapterFile f = good;  // a gap: blocks 0 and 2 but not 1
    f.tensors["blocks.2.attn.prefix_k"] = f.tensors["blocks.0.attn.prefix_k"];
    f.tensors["blocks.2.attn.prefix_v"] = f.tensors["blocks.0.attn.prefix_v"];
    f.tensors.erase("blocks.1.attn.prefix_k");
    f.tensors.erase("blocks.1.attn.prefix_v");
    EXPECT_CONTAINS(error_of([&] { ParScaleAdapter::load(f.write(dir)); }), "missing tensor 'blocks.1.attn.prefix_k'");
  }
  {
    AdapterFile f = good;  // block 1 with another head count than block 0
    const Shape s = f.tensors["blocks.1.attn.prefix_k"].shape;
    f.tensors["blocks.1.attn.prefix_k"] = Tensor({s[0], s[1] + 1, s[2], s[3]});
    const std::string e = error_of([&] { ParScaleAdapter::load(f.write(dir)); });
    EXPECT_CONTAINS(e, "'blocks.1.attn.prefix_k' has shape " + shape_str({s[0], s[1] + 1, s[2], s[3]}));
    EXPECT_CONTAINS(e, "expected " + shape_str(s));
  }
  {
    AdapterFile f = good;
    f.tensors["aggregate.0.weight"] = Tensor({128, 128});
    const std::string e = error_of([&] { ParScaleAdapter::load(f.write(dir)); });
    EXPECT_CONTAINS(e, "'aggregate.0.weight' has shape [128, 128], expected [128, 256]");
  }
  {
    AdapterFile f = good;
    f.tensors["aggregate.2.weight"] = Tensor({3, 128});
    EXPECT_CONTAINS(error_of([&] { ParScaleAdapter::load(f.write(dir)); }),
                    "'aggregate.2.weight' has shape [3, 128], expected [2, 128]");
  }
}

TEST(AdapterFile, DeclaredSizesWhoseProductsOverflowAreRefused) {
  // Tensors without elements can declare any sizes: H·head_dim = 2·2^62
  // would overflow int64.
  TempDir dir;
  AdapterFile f(tiny_adapter(1, 0));
  const Shape huge = {1, 2, 0, int64_t{1} << 62};
  for (auto& [name, t] : f.tensors)
    if (name.find("prefix_") != std::string::npos) t = Tensor(huge);
  const std::string e = error_of([&] { ParScaleAdapter::load(f.write(dir)); });
  EXPECT_CONTAINS(e, "adapter.safetensors");
  EXPECT_CONTAINS(e, "'blocks.0.attn.prefix_k' has shape [1, 2, 0, 4611686018427387904]");
  EXPECT_CONTAINS(e, "exceeds the limit");
}

TEST(AdapterFile, BlockIndicesBeyondTheLimitAreRefused) {
  // The block count is the highest block index plus one; for
  // blocks.2147483647 that overflowed int, the count came out negative and
  // the missing blocks.0 went unnoticed (then was dereferenced).
  TempDir dir;
  AdapterFile f(tiny_adapter(1, 0));
  for (const char* kv : {"k", "v"}) {
    f.tensors[std::string("blocks.2147483647.attn.prefix_") + kv] = Tensor({1, 2, 0, 64});
    for (int b = 0; b < 2; ++b) f.tensors.erase("blocks." + std::to_string(b) + ".attn.prefix_" + kv);
  }
  const std::string e = error_of([&] { ParScaleAdapter::load(f.write(dir)); });
  EXPECT_CONTAINS(e, "adapter.safetensors");
  EXPECT_CONTAINS(e, "tensor 'blocks.2147483647.attn.prefix_k' is beyond the limit of 4096 blocks");
}

TEST(AdapterFile, ForeignAndMissingFilesAreErrors) {
  TempDir dir;
  EXPECT_CONTAINS(error_of([&] { ParScaleAdapter::load(dir / "nope.safetensors"); }), "nope.safetensors");
  // A PyTorch checkpoint is not an adapter (no metadata).
  EXPECT_CONTAINS(error_of([] { ParScaleAdapter::load(kGolden / "var.pth"); }), "must be a safetensors file");
  // A model checkpoint in safetensors is not an adapter either.
  EXPECT_CONTAINS(error_of([] { ParScaleAdapter::load(kGolden / "var.safetensors"); }), "no 'parscale_n'");
  test::write_bytes(dir / "trunc.safetensors", std::string("\x10\0\0\0\0\0\0\0{\"a\":", 13));
  EXPECT_CONTAINS(error_of([&] { ParScaleAdapter::load(dir / "trunc.safetensors"); }), "trunc.safetensors");
}

// ---- the fit against a model ----

TEST(AdapterFit, MismatchNamesTheTensorAndBothShapes) {
  Pipeline pipe = Pipeline::from_files(kGolden / "var.safetensors", kGolden / "vae.safetensors", PipelineOptions{2});
  const VarConfig& m = pipe.var_config();  // depth 3, C 48, 3 heads of 16
  auto with = [&](int depth, int heads, int head_dim) {
    VarConfig c = m;
    c.depth = depth;
    c.num_heads = heads;
    c.head_dim = head_dim;
    c.embed_dim = heads * head_dim;
    return ParScaleAdapter::random_init(c, 2, 4, 1);
  };
  std::string e = error_of([&] { pipe.attach_adapter(with(2, 3, 16)); });
  EXPECT_CONTAINS(e, "prefixes for 2 blocks");
  EXPECT_CONTAINS(e, "the model has 3");
  e = error_of([&] { pipe.attach_adapter(with(3, 4, 12)); });  // same C, other heads
  EXPECT_CONTAINS(e, "'blocks.0.attn.prefix_k' has shape [2, 4, 4, 12], the model needs [2, 3, 4, 16]");
  e = error_of([&] { pipe.attach_adapter(with(3, 3, 8)); });
  EXPECT_CONTAINS(e, "'blocks.0.attn.prefix_k' has shape [2, 3, 4, 8], the model needs [2, 3, 4, 16]");
  ParScaleAdapter wide = ParScaleAdapter::load(kGolden / "parscale_p2.safetensors");
  wide.aggregate0_w = Tensor({48, 48});
  e = error_of([&] { pipe.attach_adapter(wide); });
  EXPECT_CONTAINS(e, "'aggregate.0.weight' has shape [48, 48], the model needs [48, 96]");
  // A refused adapter leaves the model as it was.
  EXPECT_EQ(pipe.adapter_streams(), 1);
  Pipeline small_tiny = tiny();
  e = error_of([&] { small_tiny.attach_adapter(ParScaleAdapter::load(kGolden / "parscale_p2.safetensors")); });
  EXPECT_CONTAINS(e, "does not fit the model");
}

// ---- the engine ----

std::vector<ImageRequest> requests(std::initializer_list<int> classes, double cfg) {
  std::vector<ImageRequest> out;
  uint64_t seed = 11;
  for (int c : classes) out.push_back({c, seed++, SamplingParams{cfg, 20, 0.9}});
  return out;
}

TEST(AdapterEngine, WeightsSumToOneAboveTheFloor) {
  Pipeline pipe = tiny();
  for (int P : {2, 3, 5}) {
    ParScaleAdapter a = tiny_adapter(P, 3, 100 + P);
    // A trained-looking aggregator: large, unequal logits saturate the softmax.
    for (size_t i = 0; i < a.aggregate2_w.data.size(); ++i) a.aggregate2_w.data[i] = 3.0f * std::sin(1.7f * i);
    for (int p = 0; p < P; ++p) a.aggregate2_b.data[p] = 40.0f * (p - 1);
    pipe.attach_adapter(a);
    const float floor = static_cast<float>(a.smooth / P);
    int64_t checked = 0;
    float lowest = 1.0f;
    GenerateOptions opts;
    opts.decode = false;
    opts.on_stream_weights = [&](int, const float* w, int64_t rows, int64_t l, int64_t p) {
      ASSERT_EQ(p, P);
      for (int64_t m = 0; m < rows * l; ++m) {
        float sum = 0.0f;
        for (int64_t q = 0; q < P; ++q) {
          EXPECT_GE(w[m * P + q], floor * (1.0f - 1e-6f));
          lowest = std::min(lowest, w[m * P + q]);
          sum += w[m * P + q];
        }
        EXPECT_NEAR(sum, 1.0f, 1e-6f);
        ++checked;
      }
    };
    pipe.generate(requests({1, 4}, 2.0), opts);
    EXPECT_GT(checked, 0);
    EXPECT_NEAR(lowest, floor, 1e-6f) << "the saturated streams sit on the floor s/P";
  }
}

TEST(AdapterEngine, UniformStartGivesEqualWeights) {
  Pipeline pipe = tiny();
  pipe.attach_adapter(tiny_adapter(4, 2));
  GenerateOptions opts;
  opts.decode = false;
  int calls = 0;
  opts.on_stream_weights = [&](int, const float* w, int64_t rows, int64_t l, int64_t P) {
    ++calls;
    for (int64_t i = 0; i < rows * l * P; ++i) EXPECT_NEAR(w[i], 0.25f, 1e-7f);
  };
  pipe.generate(requests({2}, 0.0), opts);
  EXPECT_EQ(calls, pipe.var_config().num_scales());
}

TEST(AdapterEngine, OnePassPerScaleOverPTimesTheRows) {
  Pipeline pipe = tiny();
  pipe.attach_adapter(tiny_adapter(3, 2));
  const auto req = requests({1, 2, 3}, 1.5);  // guided: 6 image rows
  EXPECT_EQ(pipe.rows_for(req), 18);
  const GeneratedImages out = pipe.generate(req);
  EXPECT_EQ(out.count, 3);
  for (size_t s = 0; s < out.counters.passes_per_scale.size(); ++s) {
    EXPECT_EQ(out.counters.passes_per_scale[s], 1);
    EXPECT_EQ(out.counters.rows_per_scale[s], 18);
  }
}

TEST(AdapterEngine, PlanGrowsTheKvCacheByP) {
  Pipeline pipe = tiny();
  const auto req = requests({1, 2}, 4.0);
  const MemoryPlan plain = pipe.plan_memory(req);
  const ParScaleAdapter a = tiny_adapter(4, 8);
  pipe.attach_adapter(a);
  const MemoryPlan ps = pipe.plan_memory(req);
  EXPECT_EQ(ps.kv_cache, 4 * plain.kv_cache) << "the prefix is not copied into the per-row cache";
  // The adapter as the backend holds it: its aggregation matrices in the
  // layout of the backend's products, every array padded as the backend
  // allocates it.
  const auto be = make_cpu_backend(1);
  const auto floats = [&](const Tensor& t) { return be->array_bytes(t.data.size(), sizeof(float)); };
  uint64_t held = be->matrix_bytes(a.aggregate0_w.shape) + be->matrix_bytes(a.aggregate2_w.shape) +
                  floats(a.aggregate0_b) + floats(a.aggregate2_b);
  for (int b = 0; b < a.depth(); ++b) held += floats(a.prefix_k[b]) + floats(a.prefix_v[b]);
  EXPECT_EQ(ps.weights, plain.weights + held);
  EXPECT_GE(held, a.bytes() - (a.aggregate0_w.data.size() + a.aggregate2_w.data.size()) * sizeof(float));
  EXPECT_GT(ps.activations, plain.activations);
}

TEST(AdapterEngine, WithoutAdapterIsPlainVarBitForBit) {
  const auto req = requests({1, 5, 10}, 3.0);
  const GeneratedImages plain = tiny().generate(req);
  Pipeline pipe = tiny();
  pipe.attach_adapter(tiny_adapter(3, 4));
  const GeneratedImages ps = pipe.generate(req);
  EXPECT_NE(ps.tokens, plain.tokens) << "the adapter must change the outputs";
  pipe.detach_adapter();
  EXPECT_EQ(pipe.adapter_streams(), 1);
  const GeneratedImages again = pipe.generate(req);
  EXPECT_EQ(again.tokens, plain.tokens);
  EXPECT_TRUE(again.pixels == plain.pixels);
}

TEST(AdapterEngine, OneStreamNoPrefixNoSmoothingIsPlainVar) {
  // P = 1, T = 0, s = 0: the only weight is exactly 1 and attention sees only
  // the row's own keys, so the aggregated path reproduces plain VAR exactly.
  const auto req = requests({1, 5}, 2.0);
  Pipeline pipe = tiny();
  std::vector<std::vector<float>> plain_logits, ps_logits;
  GenerateOptions opts;
  opts.on_logits = [&](int, const float* lg, int64_t b, int64_t l, int64_t v) {
    plain_logits.emplace_back(lg, lg + b * l * v);
  };
  const GeneratedImages plain = pipe.generate(req, opts);
  pipe.attach_adapter(ParScaleAdapter::random_init(pipe.var_config(), 1, 0, 3, 0.0));
  opts.on_logits = [&](int, const float* lg, int64_t b, int64_t l, int64_t v) {
    ps_logits.emplace_back(lg, lg + b * l * v);
  };
  const GeneratedImages ps = pipe.generate(req, opts);
  EXPECT_EQ(ps.tokens, plain.tokens);
  EXPECT_TRUE(ps_logits == plain_logits);
  EXPECT_TRUE(ps.pixels == plain.pixels);
}

TEST(AdapterEngine, AnImageIsIndependentOfItsNeighbours) {
  Pipeline pipe = tiny();
  pipe.attach_adapter(tiny_adapter(3, 4));
  const ImageRequest probe{6, 4242, SamplingParams{3.0, 30, 0.95}};
  const GeneratedImages alone = pipe.generate({probe});
  const size_t n = alone.pixels.size();
  std::vector<ImageRequest> req = requests({2, 10, 7}, 0.0);  // unguided neighbours change the row layout
  req[2].sampling.cfg = 1.0;
  for (size_t pos : {size_t{0}, size_t{2}, size_t{3}}) {
    std::vector<ImageRequest> all = req;
    all.insert(all.begin() + static_cast<std::ptrdiff_t>(pos), probe);
    const GeneratedImages out = pipe.generate(all);
    SCOPED_TRACE("position " + std::to_string(pos));
    EXPECT_EQ(out.tokens[pos], alone.tokens[0]);
    EXPECT_TRUE(std::vector<float>(out.pixels.begin() + pos * n, out.pixels.begin() + (pos + 1) * n) ==
                alone.pixels);
  }
  // Sequential (each image alone) gives the same images as batched.
  GenerateOptions seq;
  seq.schedule = Schedule::Sequential;
  req.insert(req.begin(), probe);
  const GeneratedImages a = pipe.generate(req), b = pipe.generate(req, seq);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_TRUE(a.pixels == b.pixels);
}

}  // namespace
}  // namespace varps
