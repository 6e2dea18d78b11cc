// ParScale adapter files (spec: docs/spec/parscale.md "Adapter file"): reading with
// every shape checked against the metadata, writing, a seeded untrained
// initialisation, and the fit against a model.
#include <charconv>
#include <cmath>
#include <map>
#include <set>

#include "model/weights.hpp"
#include "varps/adapter.hpp"
#include "varps/checkpoint.hpp"
#include "varps/error.hpp"

namespace varps {

namespace {

constexpr int kMaxStreams = 1024;
constexpr int kMaxPrefixTokens = 1 << 16;
// Far beyond any VAR (d30: 1920); keeps P·C and the aggregator's sizes well
// inside int64.
constexpr int64_t kMaxEmbedDim = int64_t{1} << 20;
// Far beyond any VAR too (d36 has 36 blocks); the block count is the highest
// index plus one, so this also keeps it inside int.
constexpr int kMaxDepth = 4096;

std::string prefix_name(int block, const char* kv) {
  return "blocks." + std::to_string(block) + ".attn.prefix_" + kv;
}

// The block index of "blocks.{i}.attn.prefix_k|v", or -1.
int prefix_block(const std::string& name, char* kv) {
  const std::string head = "blocks.";
  if (name.rfind(head, 0) != 0) return -1;
  const char* p = name.data() + head.size();
  const char* end = name.data() + name.size();
  int i = -1;
  const auto [rest, ec] = std::from_chars(p, end, i);
  if (ec != std::errc() || rest == p || (*p == '0' && rest - p > 1)) return -1;
  const std::string tail(rest, end);
  if (tail == ".attn.prefix_k") *kv = 'k';
  else if (tail == ".attn.prefix_v") *kv = 'v';
  else return -1;
  return i;
}

int metadata_int(const Checkpoint& ck, const std::string& key, int lo, int hi) {
  const auto it = ck.metadata().find(key);
  if (it == ck.metadata().end()) throw Error(ck.path().string() + ": adapter metadata has no '" + key + "'");
  const std::string& text = it->second;
  int v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < lo || v > hi)
    throw Error(ck.path().string() + ": adapter metadata '" + key + "' is '" + text + "', expected an integer in [" +
                std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return v;
}

double metadata_smooth(const Checkpoint& ck) {
  const std::string key = "parscale_attn_smooth";
  const auto it = ck.metadata().find(key);
  if (it == ck.metadata().end()) throw Error(ck.path().string() + ": adapter metadata has no '" + key + "'");
  const std::string& text = it->second;
  double v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || !(v >= 0.0 && v <= 1.0))
    throw Error(ck.path().string() + ": adapter metadata '" + key + "' is '" + text + "', expected a number in [0, 1]");
  return v;
}

std::string shortest(double v) {
  char buf[32];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, ec == std::errc() ? end : buf);
}

void expect_shape(const std::string& where, const std::string& name, const Shape& got, const Shape& want,
                  const std::string& why) {
  if (got != want)
    throw Error(where + ": tensor '" + name + "' has shape " + shape_str(got) + ", expected " + shape_str(want) + " (" +
                why + ")");
}

}  // namespace

int64_t ParScaleAdapter::heads() const { return prefix_k.empty() ? 0 : prefix_k[0].dim(1); }
int64_t ParScaleAdapter::head_dim() const { return prefix_k.empty() ? 0 : prefix_k[0].dim(3); }
int64_t ParScaleAdapter::embed_dim() const { return aggregate0_w.shape.empty() ? 0 : aggregate0_w.dim(0); }

uint64_t ParScaleAdapter::bytes() const {
  uint64_t n = aggregate0_w.data.size() + aggregate0_b.data.size() + aggregate2_w.data.size() +
               aggregate2_b.data.size();
  for (size_t i = 0; i < prefix_k.size(); ++i) n += prefix_k[i].data.size() + prefix_v[i].data.size();
  return n * sizeof(float);
}

ParScaleAdapter ParScaleAdapter::load(const std::filesystem::path& path) {
  return from_checkpoint(Checkpoint::open(path));
}

ParScaleAdapter ParScaleAdapter::from_checkpoint(const Checkpoint& ck) {
  const std::string where = ck.path().string();
  if (ck.format() != CheckpointFormat::Safetensors)
    throw Error(where + ": a ParScale adapter must be a safetensors file (its metadata carries P, T and s), got " +
                format_name(ck.format()));
  ParScaleAdapter a;
  a.streams = metadata_int(ck, "parscale_n", 1, kMaxStreams);
  a.prefix_tokens = metadata_int(ck, "parscale_n_tokens", 0, kMaxPrefixTokens);
  a.smooth = metadata_smooth(ck);
  a.origin = where;

  // Which blocks carry prefixes; everything else must be the aggregator.
  std::map<int, std::set<char>> blocks;
  const std::set<std::string> aggregator = {"aggregate.0.weight", "aggregate.0.bias", "aggregate.2.weight",
                                            "aggregate.2.bias"};
  for (const TensorRecord& rec : ck.tensors()) {
    char kv = 0;
    const int b = prefix_block(rec.name, &kv);
    if (b >= kMaxDepth)
      throw Error(where + ": tensor '" + rec.name + "' is beyond the limit of " + std::to_string(kMaxDepth) +
                  " blocks");
    if (b >= 0)
      blocks[b].insert(kv);
    else if (!aggregator.count(rec.name))
      throw Error(where + ": unexpected tensor '" + rec.name + "' " + shape_str(rec.shape) +
                  " (an adapter holds blocks.{i}.attn.prefix_k/prefix_v and aggregate.{0,2}.{weight,bias})");
  }
  for (const std::string& name : aggregator)
    if (!ck.contains(name)) throw Error(where + ": missing tensor '" + name + "'");
  if (blocks.empty()) throw Error(where + ": missing tensor 'blocks.0.attn.prefix_k' (no prefix tensors at all)");
  const int depth = blocks.rbegin()->first + 1;
  for (int b = 0; b < depth; ++b)
    for (const char* kv : {"k", "v"})
      if (!blocks.count(b) || !blocks[b].count(kv[0]))
        throw Error(where + ": missing tensor '" + prefix_name(b, kv) + "' (blocks 0.." + std::to_string(depth - 1) +
                    " have prefixes)");

  // Shapes: P and T from the metadata, H and head_dim from block 0.
  const int64_t P = a.streams, T = a.prefix_tokens;
  const TensorRecord& first = *ck.find(prefix_name(0, "k"));
  if (first.shape.size() != 4 || first.shape[0] != P || first.shape[2] != T)
    throw Error(where + ": tensor '" + first.name + "' has shape " + shape_str(first.shape) +
                ", expected [P, H, T, head_dim] with P = parscale_n = " + std::to_string(P) +
                " and T = parscale_n_tokens = " + std::to_string(T));
  const int64_t H = first.shape[1], hd = first.shape[3];
  if (H < 1 || hd < 1) throw Error(where + ": tensor '" + first.name + "' has an empty head axis " + shape_str(first.shape));
  // C = H·head_dim and the aggregator's P·C come from declared sizes; a
  // tensor with no elements can declare any of them.
  int64_t C = 0, PC = 0;
  if (__builtin_mul_overflow(H, hd, &C) || __builtin_mul_overflow(P, C, &PC) || C > kMaxEmbedDim)
    throw Error(where + ": tensor '" + first.name + "' has shape " + shape_str(first.shape) + ": C = H·head_dim = " +
                std::to_string(H) + "·" + std::to_string(hd) + " exceeds the limit of " +
                std::to_string(kMaxEmbedDim));
  const std::string why_prefix = "P = parscale_n, H and head_dim as blocks.0, T = parscale_n_tokens";
  for (int b = 0; b < depth; ++b)
    for (const char* kv : {"k", "v"}) {
      const std::string name = prefix_name(b, kv);
      expect_shape(where, name, ck.find(name)->shape, {P, H, T, hd}, why_prefix);
      (kv[0] == 'k' ? a.prefix_k : a.prefix_v).push_back(ck.read_f32(name));
    }
  const std::string why_agg = "C = H·head_dim = " + std::to_string(C) + ", P = parscale_n";
  expect_shape(where, "aggregate.0.weight", ck.find("aggregate.0.weight")->shape, {C, PC}, why_agg);
  expect_shape(where, "aggregate.0.bias", ck.find("aggregate.0.bias")->shape, {C}, why_agg);
  expect_shape(where, "aggregate.2.weight", ck.find("aggregate.2.weight")->shape, {P, C}, why_agg);
  expect_shape(where, "aggregate.2.bias", ck.find("aggregate.2.bias")->shape, {P}, why_agg);
  a.aggregate0_w = ck.read_f32("aggregate.0.weight");
  a.aggregate0_b = ck.read_f32("aggregate.0.bias");
  a.aggregate2_w = ck.read_f32("aggregate.2.weight");
  a.aggregate2_b = ck.read_f32("aggregate.2.bias");
  return a;
}

ParScaleAdapter ParScaleAdapter::random_init(const VarConfig& m, int streams, int prefix_tokens, uint64_t seed,
                                             double smooth) {
  if (streams < 1 || streams > kMaxStreams)
    throw Error("adapter streams must be in [1, " + std::to_string(kMaxStreams) + "], got " + std::to_string(streams));
  if (prefix_tokens < 0 || prefix_tokens > kMaxPrefixTokens)
    throw Error("adapter prefix tokens must be in [0, " + std::to_string(kMaxPrefixTokens) + "], got " +
                std::to_string(prefix_tokens));
  if (!(smooth >= 0.0 && smooth <= 1.0)) throw Error("adapter smoothing must be in [0, 1], got " + shortest(smooth));
  const int64_t P = streams, T = prefix_tokens, H = m.num_heads, hd = m.head_dim, C = m.embed_dim;
  ParScaleAdapter a;
  a.streams = streams;
  a.prefix_tokens = prefix_tokens;
  a.smooth = smooth;
  a.origin = "random init (seed " + std::to_string(seed) + ", untrained)";
  // Uniform with standard deviation 1/sqrt(hd): keys of about unit norm,
  // like the model's own L2-normalised keys.
  const float key_bound = std::sqrt(3.0f / static_cast<float>(hd));
  const float value_bound = 0.02f * std::sqrt(3.0f);
  for (int b = 0; b < m.depth; ++b) {
    Tensor k({P, H, T, hd}), v({P, H, T, hd});
    fill_uniform(k, seed, prefix_name(b, "k"), key_bound);
    fill_uniform(v, seed, prefix_name(b, "v"), value_bound);
    a.prefix_k.push_back(std::move(k));
    a.prefix_v.push_back(std::move(v));
  }
  // nn.Linear's default: uniform(±1/sqrt(fan_in)) for weight and bias.
  const float bound0 = 1.0f / std::sqrt(static_cast<float>(P * C));
  a.aggregate0_w = Tensor({C, P * C});
  a.aggregate0_b = Tensor({C});
  fill_uniform(a.aggregate0_w, seed, "aggregate.0.weight", bound0);
  fill_uniform(a.aggregate0_b, seed, "aggregate.0.bias", bound0);
  // Zero output layer: every stream starts with softmax weight 1/P.
  a.aggregate2_w = Tensor({P, C});
  a.aggregate2_b = Tensor({P});
  return a;
}

void ParScaleAdapter::save(const std::filesystem::path& path) const {
  std::vector<NamedTensor> tensors;
  std::vector<std::string> names;
  names.reserve(2 * prefix_k.size());
  for (int b = 0; b < depth(); ++b) {
    names.push_back(prefix_name(b, "k"));
    names.push_back(prefix_name(b, "v"));
  }
  for (int b = 0; b < depth(); ++b) {
    tensors.push_back({names[2 * b], &prefix_k[b], nullptr});
    tensors.push_back({names[2 * b + 1], &prefix_v[b], nullptr});
  }
  tensors.push_back({"aggregate.0.weight", &aggregate0_w, nullptr});
  tensors.push_back({"aggregate.0.bias", &aggregate0_b, nullptr});
  tensors.push_back({"aggregate.2.weight", &aggregate2_w, nullptr});
  tensors.push_back({"aggregate.2.bias", &aggregate2_b, nullptr});
  write_safetensors(path, tensors,
                    {{"parscale_n", std::to_string(streams)},
                     {"parscale_n_tokens", std::to_string(prefix_tokens)},
                     {"parscale_attn_smooth", shortest(smooth)}});
}

void ParScaleAdapter::check_fits(const VarConfig& m) const {
  const std::string where = "adapter " + origin + " does not fit the model (" + m.describe() + ")";
  if (depth() != m.depth)
    throw Error(where + ": it has prefixes for " + std::to_string(depth()) + " blocks (blocks.0.." +
                std::to_string(depth() - 1) + "), the model has " + std::to_string(m.depth));
  const int64_t P = streams, T = prefix_tokens, C = m.embed_dim;
  auto fits = [&](const std::string& name, const Shape& got, const Shape& want) {
    if (got != want)
      throw Error(where + ": tensor '" + name + "' has shape " + shape_str(got) + ", the model needs " +
                  shape_str(want));
  };
  for (int b = 0; b < depth(); ++b) {
    fits(prefix_name(b, "k"), prefix_k[b].shape, {P, m.num_heads, T, m.head_dim});
    fits(prefix_name(b, "v"), prefix_v[b].shape, {P, m.num_heads, T, m.head_dim});
  }
  fits("aggregate.0.weight", aggregate0_w.shape, {C, P * C});
  fits("aggregate.0.bias", aggregate0_b.shape, {C});
  fits("aggregate.2.weight", aggregate2_w.shape, {P, C});
  fits("aggregate.2.bias", aggregate2_b.shape, {P});
}

}  // namespace varps
