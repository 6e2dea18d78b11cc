// VQVAE weights binding, decoder and encoder.
#include "model/vqvae.hpp"

#include <algorithm>

#include "varps/error.hpp"

namespace varps {

namespace {

struct Binder {
  Backend& be;
  WeightSource& w;
  uint64_t& bytes;
  uint64_t& parameters;  // counted loaded or not: the tokenizer's size
  // false: tensors are still taken (so a checkpoint is checked whole) but
  // not uploaded, and their arrays stay empty.
  bool load = true;

  Array<float> upload(const std::string& name, const Shape& shape) {
    const Tensor t = w.take(name, shape);
    parameters += t.data.size();
    if (!load) return {};
    bytes += be.array_bytes(t.data.size(), sizeof(float));
    return be.upload(t);
  }

  Conv2dWeights conv(const std::string& p, int64_t co, int64_t ci, int k) {
    Conv2dWeights c;
    c.co = co;
    c.ci = ci;
    c.k = k;
    const Tensor weight = w.take(p + ".weight", {co, ci, k, k});
    parameters += weight.data.size();
    if (load) {
      bytes += be.matrix_bytes(weight.shape);
      c.w = be.upload_matrix(weight);  // only ever conv2d's w
    }
    c.b = upload(p + ".bias", {co});
    return c;
  }
  GroupNormWeights norm(const std::string& p, int64_t ch) {
    GroupNormWeights g;
    g.channels = ch;
    g.gamma = upload(p + ".weight", {ch});
    g.beta = upload(p + ".bias", {ch});
    return g;
  }
  ResBlock res(const std::string& p, int64_t in, int64_t out) {
    ResBlock r;
    r.norm1 = norm(p + ".norm1", in);
    r.conv1 = conv(p + ".conv1", out, in, 3);
    r.norm2 = norm(p + ".norm2", out);
    r.conv2 = conv(p + ".conv2", out, out, 3);
    if (in != out) r.nin_shortcut = conv(p + ".nin_shortcut", out, in, 1);
    return r;
  }
  AttnBlock attn(const std::string& p, int64_t ch) {
    AttnBlock a;
    a.norm = norm(p + ".norm", ch);
    a.qkv = conv(p + ".qkv", 3 * ch, ch, 1);
    a.proj_out = conv(p + ".proj_out", ch, ch, 1);
    return a;
  }
};

}  // namespace

Vqvae::Vqvae(Backend& be, const VaeConfig& c, WeightSource& w, bool load_encoder)
    : be_(be), cfg_(c), encoder_loaded_(load_encoder && c.has_encoder()) {
  if (c.ch_mult.empty() || c.ch <= 0 || c.cvae <= 0 || c.vocab_size <= 0)
    throw Error(w.origin() + ": incomplete VQVAE configuration");
  for (int m : c.ch_mult)
    if ((c.ch * m) % 32 != 0)
      throw Error(w.origin() + ": VQVAE level width " + std::to_string(c.ch * m) +
                  " is not divisible by GroupNorm's 32 groups");
  Binder bind{be, w, weight_bytes_, parameters_};
  const int64_t levels = static_cast<int64_t>(c.ch_mult.size());
  codebook_ = bind.upload("quantize.embedding.weight", {c.vocab_size, c.cvae});
  bind.load = encoder_loaded_;  // quant_conv belongs to the encoder's side
  quant_conv_ = bind.conv("quant_conv", c.cvae, c.cvae, c.quant_conv_ks);
  bind.load = true;
  post_quant_conv_ = bind.conv("post_quant_conv", c.cvae, c.cvae, c.quant_conv_ks);
  for (int i = 0; i < c.num_phi; ++i) {
    const std::string name = c.phi_layout == PhiLayout::PartiallyShared ? "quantize.quant_resi.qresi_ls." + std::to_string(i)
                             : c.phi_layout == PhiLayout::Shared        ? std::string("quantize.quant_resi.qresi")
                                                                        : "quantize.quant_resi." + std::to_string(i);
    phi_.push_back(bind.conv(name, c.cvae, c.cvae, 3));
  }

  // Decoder: lowest resolution first, as it runs.
  int64_t block_in = int64_t{c.ch} * c.ch_mult.back();
  dec_conv_in_ = bind.conv("decoder.conv_in", block_in, c.cvae, 3);
  dec_mid_1_ = bind.res("decoder.mid.block_1", block_in, block_in);
  if (c.using_mid_sa) dec_mid_attn_.push_back(bind.attn("decoder.mid.attn_1", block_in));
  dec_mid_2_ = bind.res("decoder.mid.block_2", block_in, block_in);
  dec_up_.resize(static_cast<size_t>(levels));
  for (int64_t lvl = levels - 1; lvl >= 0; --lvl) {
    const std::string p = "decoder.up." + std::to_string(lvl);
    const int64_t block_out = int64_t{c.ch} * c.ch_mult[lvl];
    ResLevel& L = dec_up_[lvl];
    for (int j = 0; j < c.decoder_res_blocks; ++j) {
      L.block.push_back(bind.res(p + ".block." + std::to_string(j), block_in, block_out));
      block_in = block_out;
      if (lvl == levels - 1 && c.using_sa) L.attn.push_back(bind.attn(p + ".attn." + std::to_string(j), block_in));
    }
    if (lvl != 0) L.resample = bind.conv(p + ".upsample.conv", block_in, block_in, 3);
  }
  dec_norm_out_ = bind.norm("decoder.norm_out", block_in);
  dec_conv_out_ = bind.conv("decoder.conv_out", 3, block_in, 3);

  if (!c.has_encoder()) return;
  bind.load = encoder_loaded_;
  enc_conv_in_ = bind.conv("encoder.conv_in", c.ch, 3, 3);
  block_in = c.ch;
  enc_down_.resize(static_cast<size_t>(levels));
  for (int64_t lvl = 0; lvl < levels; ++lvl) {
    const std::string p = "encoder.down." + std::to_string(lvl);
    const int64_t block_out = int64_t{c.ch} * c.ch_mult[lvl];
    ResLevel& L = enc_down_[lvl];
    for (int j = 0; j < c.encoder_res_blocks; ++j) {
      L.block.push_back(bind.res(p + ".block." + std::to_string(j), block_in, block_out));
      block_in = block_out;
      if (lvl == levels - 1 && c.using_sa) L.attn.push_back(bind.attn(p + ".attn." + std::to_string(j), block_in));
    }
    if (lvl != levels - 1) L.resample = bind.conv(p + ".downsample.conv", block_in, block_in, 3);
  }
  enc_mid_1_ = bind.res("encoder.mid.block_1", block_in, block_in);
  if (c.using_mid_sa) enc_mid_attn_.push_back(bind.attn("encoder.mid.attn_1", block_in));
  enc_mid_2_ = bind.res("encoder.mid.block_2", block_in, block_in);
  enc_norm_out_ = bind.norm("encoder.norm_out", block_in);
  enc_conv_out_ = bind.conv("encoder.conv_out", c.cvae, block_in, 3);
}

FeatureMap Vqvae::decode(const FeatureMap& f_hat) const {
  return decode(f_hat, decode_images_per_pass(f_hat.h, f_hat.n));
}

FeatureMap Vqvae::decode(const FeatureMap& f_hat, int64_t per_pass) const {
  if (per_pass < 1) throw Error("decoder passes need at least one image, got " + std::to_string(per_pass));
  MapArena arena = new_decoder_arena(f_hat.h, std::min(per_pass, f_hat.n));
  const FeatureMap img = new_image_map(f_hat);
  for (const DecoderPass& pass : decoder_passes(f_hat, img, per_pass)) decode_pass(pass.f_hat, arena, pass.img);
  return img;
}

std::vector<Vqvae::DecoderPass> Vqvae::decoder_passes(const FeatureMap& f_hat, const FeatureMap& img,
                                                      int64_t per_pass) {
  const auto part = [](const FeatureMap& m, int64_t first, int64_t n) {
    const size_t one = static_cast<size_t>(m.c * m.h * m.w);
    return FeatureMap{m.data.slice(static_cast<size_t>(first) * one, static_cast<size_t>(n) * one), n, m.c, m.h, m.w};
  };
  std::vector<DecoderPass> passes;
  for (int64_t first = 0; first < f_hat.n; first += per_pass) {
    const int64_t n = std::min(per_pass, f_hat.n - first);
    passes.push_back({part(f_hat, first, n), part(img, first, n)});
  }
  return passes;
}

FeatureMap Vqvae::new_image_map(const FeatureMap& f_hat) const {
  return new_map(f_hat.n, 3, f_hat.h * cfg_.downsample(), f_hat.w * cfg_.downsample());
}

uint64_t Vqvae::image_map_bytes(int64_t n, int64_t S) const {
  const int64_t side = S * cfg_.downsample();  // as new_image_map
  return be_.array_bytes(static_cast<uint64_t>(n * 3 * side * side), sizeof(float));
}

int64_t Vqvae::decode_images_per_pass(int64_t S, int64_t images) const {
  const uint64_t one = std::max<uint64_t>(decoder_map_bytes_per_image(S), 1);
  return std::clamp<int64_t>(static_cast<int64_t>(kDecoderPassBytes / one), 1, std::max<int64_t>(images, 1));
}

uint64_t Vqvae::decoder_map_bytes_per_image(int64_t S) const {
  return (decoder_map_floats_per_image(S) + kNormStatsFloats) * sizeof(float);
}

uint64_t Vqvae::decoder_map_floats_per_image(int64_t S) const {
  // A convolution holds its input and its output; a residual block's second
  // one adds into the block's input (or its 1×1 shortcut's output, made
  // while the first's output is alive); an attention block holds x, the
  // norm then q/k/v, its output and the projection's, and the scores.
  uint64_t peak = 0;
  for_each_decoder_layer(
      S, false,
      [&](const Conv2dWeights& c, int64_t side) {
        peak = std::max(peak, static_cast<uint64_t>((c.ci + c.co) * side * side));
      },
      [&](int64_t channels, int64_t side) {
        const uint64_t p = static_cast<uint64_t>(side * side);
        peak = std::max(peak, 6 * static_cast<uint64_t>(channels) * p + p * p);
      },
      [&](const ResBlock& rb, int64_t side) {
        if (rb.nin_shortcut.k)
          peak = std::max(peak, static_cast<uint64_t>((rb.conv1.ci + 2 * rb.conv1.co) * side * side));
      });
  return peak;
}

uint64_t Vqvae::decoder_arena_floats(int64_t S, int64_t images) const {
  const uint64_t n = static_cast<uint64_t>(std::max<int64_t>(images, 1));
  return MapArena::buffer_floats(decoder_map_floats_per_image(S) * n, kDecoderMapsAlive, kNormStatsFloats * n);
}

MapArena Vqvae::new_decoder_arena(int64_t S, int64_t images, const Array<float>& idle) const {
  const uint64_t n = static_cast<uint64_t>(std::max<int64_t>(images, 1));
  const uint64_t maps = decoder_map_floats_per_image(S) * n, stats = kNormStatsFloats * n;
  if (decoder_arena_fits(S, images, idle.size() * sizeof(float)))
    return MapArena(idle, maps, kDecoderMapsAlive, stats);
  return MapArena(be_, maps, kDecoderMapsAlive, stats);  // decoder_arena_floats of them
}

bool Vqvae::decoder_arena_fits(int64_t S, int64_t images, uint64_t idle_bytes) const {
  return decoder_arena_floats(S, images) * sizeof(float) <= idle_bytes;
}

uint64_t Vqvae::decoder_arena_bytes(int64_t S, int64_t images) const {
  return be_.array_bytes(decoder_arena_floats(S, images), sizeof(float));
}

std::vector<Vqvae::DecoderLayer> Vqvae::decoder_layers() const {
  using K = DecoderLayer::Kind;
  std::vector<DecoderLayer> layers = {{K::Conv, &post_quant_conv_}, {K::Conv, &dec_conv_in_}, {K::Res, nullptr, &dec_mid_1_}};
  for (const AttnBlock& a : dec_mid_attn_) layers.push_back({K::Attn, nullptr, nullptr, &a});
  layers.push_back({K::Res, nullptr, &dec_mid_2_});
  for (int64_t lvl = static_cast<int64_t>(dec_up_.size()) - 1; lvl >= 0; --lvl) {
    const ResLevel& level = dec_up_[lvl];
    for (size_t i = 0; i < level.block.size(); ++i) {
      layers.push_back({K::Res, nullptr, &level.block[i]});
      if (!level.attn.empty()) layers.push_back({K::Attn, nullptr, nullptr, &level.attn[i]});
    }
    if (lvl != 0) layers.push_back({K::Upsample, &level.resample});
  }
  layers.push_back({K::NormConvOut, &dec_conv_out_, nullptr, nullptr, &dec_norm_out_});
  return layers;
}

// Each layer's output goes to the end of the arena opposite its input; the
// maps a layer holds beside its input are in res_block and attn_block.
void Vqvae::decode_pass(const FeatureMap& f_hat, MapArena& arena, const FeatureMap& img) const {
  VARPS_CHECK(img.n == f_hat.n && img.c == 3 && img.h == f_hat.h * cfg_.downsample() &&
                  img.w == f_hat.w * cfg_.downsample(),
              "decoder pass image shape");
  FeatureMap h = f_hat;
  for (const DecoderLayer& layer : decoder_layers()) {
    switch (layer.kind) {
      case DecoderLayer::Kind::Conv:
        h = conv(h, *layer.conv, arena);
        break;
      case DecoderLayer::Kind::Res:
        h = res_block(std::move(h), *layer.res, arena);
        break;
      case DecoderLayer::Kind::Attn:
        h = attn_block(h, *layer.attn, arena);
        break;
      case DecoderLayer::Kind::Upsample: {
        const FeatureMap up = arena.opposite(h, h.n, h.c, 2 * h.h, 2 * h.w);
        be_.upsample_nearest2x(h.planes(), up.planes());
        h = FeatureMap{};  // before the convolution: its output takes h's end
        h = conv(up, *layer.conv, arena);
        break;
      }
      case DecoderLayer::Kind::NormConvOut:
        normalized_conv(h, *layer.norm, *layer.conv, img, false, arena);
        be_.clamp(img.flat(), -1.0f, 1.0f);
        break;
    }
  }
}

void Vqvae::for_each_decoder_layer(int64_t S, bool with_phi,
                                   const std::function<void(const Conv2dWeights&, int64_t)>& on_conv,
                                   const std::function<void(int64_t, int64_t)>& on_attention,
                                   const std::function<void(const ResBlock&, int64_t)>& on_res_block) const {
  if (with_phi)
    for (const Conv2dWeights& phi : phi_) on_conv(phi, S);
  int64_t side = S;
  for (const DecoderLayer& layer : decoder_layers()) {
    switch (layer.kind) {
      case DecoderLayer::Kind::Conv:
      case DecoderLayer::Kind::NormConvOut:
        on_conv(*layer.conv, side);
        break;
      case DecoderLayer::Kind::Res: {
        const ResBlock& rb = *layer.res;
        if (on_res_block) on_res_block(rb, side);
        on_conv(rb.conv1, side);
        on_conv(rb.conv2, side);
        if (rb.nin_shortcut.k) on_conv(rb.nin_shortcut, side);
        break;
      }
      case DecoderLayer::Kind::Attn:
        on_conv(layer.attn->qkv, side);
        on_attention(layer.attn->proj_out.co, side);
        on_conv(layer.attn->proj_out, side);
        break;
      case DecoderLayer::Kind::Upsample:
        side *= 2;
        on_conv(*layer.conv, side);
        break;
    }
  }
}

WorkspaceDemand Vqvae::decoder_conv_demand(int64_t S) const {
  WorkspaceDemand d;
  for_each_decoder_layer(
      S, true,
      [&](const Conv2dWeights& c, int64_t side) {
        const uint64_t hw = static_cast<uint64_t>(side * side);
        d.convolutions.push_back({c.ci, c.co, c.k, side});
        if (c.k > 1)
          d.im2col = std::max(d.im2col, static_cast<uint64_t>(c.ci * c.k * c.k) * hw);
        else
          d.pointwise_input = std::max(d.pointwise_input, static_cast<uint64_t>(c.ci) * hw);
      },
      [](int64_t, int64_t) {});
  return d;
}

FeatureMap Vqvae::encode(const FeatureMap& img) const {
  if (!cfg_.has_encoder()) throw Error("this VQVAE checkpoint has no encoder");
  if (!encoder_loaded_)
    throw Error("this pipeline was built without the VQVAE encoder (PipelineOptions::vae_encoder = false)");
  HeapMaps maps(be_);
  FeatureMap h = conv(img, enc_conv_in_, maps);
  for (size_t lvl = 0; lvl < enc_down_.size(); ++lvl) {
    h = run_level(std::move(h), enc_down_[lvl], maps);
    // Downsample: zero pad right and bottom by one, 3x3 conv, stride 2.
    if (lvl + 1 != enc_down_.size()) h = conv(h, enc_down_[lvl].resample, maps, 2, 0, 0, 1, 1);
  }
  h = res_block(std::move(h), enc_mid_1_, maps);
  for (const auto& a : enc_mid_attn_) h = attn_block(h, a, maps);
  h = res_block(std::move(h), enc_mid_2_, maps);
  const FeatureMap z = maps.opposite(h, h.n, enc_conv_out_.co, h.h, h.w);
  normalized_conv(h, enc_norm_out_, enc_conv_out_, z, false, maps);
  return conv(z, quant_conv_, maps);
}

}  // namespace varps
