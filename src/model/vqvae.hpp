#pragma once
// The VQVAE tokenizer: decoder (f_hat → image), encoder (image → f), and the
// multi-scale quantiser with its Phi convolutions, mirroring the checkpoint's
// names (`decoder.up.3.block.1.conv2.weight`, `quantize.quant_resi.qresi_ls.2`).
#include <functional>
#include <string>
#include <vector>

#include "backend.hpp"
#include "model/feature_map.hpp"
#include "model/map_arena.hpp"
#include "model/weights.hpp"
#include "varps/config.hpp"

namespace varps {

struct Conv2dWeights {
  Array<MatrixElement> w;  // [co, ci, k, k]
  Array<float> b;          // [co]
  int64_t co = 0, ci = 0;
  int k = 0;
  View<MatrixElement> weight() const { return w.as({co, ci, k, k}); }
  View<float> bias() const { return b.as({co}); }
};

struct GroupNormWeights {
  Array<float> gamma, beta;
  int64_t channels = 0;
};

struct ResBlock {
  GroupNormWeights norm1, norm2;
  Conv2dWeights conv1, conv2;
  Conv2dWeights nin_shortcut;  // k == 0 when in == out
};

struct AttnBlock {
  GroupNormWeights norm;
  Conv2dWeights qkv, proj_out;
};

struct ResLevel {
  std::vector<ResBlock> block;
  std::vector<AttnBlock> attn;  // empty, or one after each block
  Conv2dWeights resample;       // upsample/downsample conv; k == 0 when absent
};

// The residual path's maps for N images of an S×S latent, allocated once
// with a request's other arrays (Vqvae::new_residual_maps), so that a scale's
// residual step allocates nothing and can be recorded.
struct ResidualMaps {
  FeatureMap scale_map;  // [N, Cvae, pn, pn] of one scale (pn ≤ S): its codebook vectors, or f_hat area-downsampled
  FeatureMap upsampled;  // [N, Cvae, S, S]: the codebook vectors bicubic-upsampled
  FeatureMap phi;        // [N, Cvae, S, S]: Phi's convolution of them
  uint64_t bytes() const { return (scale_map.size() + upsampled.size() + phi.size()) * sizeof(float); }
};

class Vqvae {
 public:
  // Without load_encoder, the encoder's tensors (and quant_conv) are checked
  // but not uploaded: generation only decodes.
  Vqvae(Backend& backend, const VaeConfig& config, WeightSource& weights, bool load_encoder = true);
  const VaeConfig& config() const { return cfg_; }
  uint64_t weight_bytes() const { return weight_bytes_; }
  // Every tensor of the checkpoint's tokenizer, the encoder's too when it
  // is not loaded.
  uint64_t parameters() const { return parameters_; }

  // clamp(decoder(post_quant_conv(f_hat)), -1, 1): [N, Cvae, h, w] → [N, 3, H, W],
  // decode_images_per_pass() images at a time.
  FeatureMap decode(const FeatureMap& f_hat) const;
  // The same, `images_per_pass` images at a time (the last pass takes the rest).
  FeatureMap decode(const FeatureMap& f_hat, int64_t images_per_pass) const;
  // Images the decoder runs together: as many of `images` as keep its maps
  // within kDecoderPassBytes, at least one. Images are independent in the
  // decoder, so this bounds its memory without changing a pixel.
  int64_t decode_images_per_pass(int64_t S, int64_t images) const;
  // The most bytes the decoder's maps of one S×S latent hold at once: a
  // convolution's input and output (a residual block's norms are applied as
  // its convolutions read, and its second convolution adds into the block's
  // input), a 1×1 shortcut's output beside them, or an attention block's
  // maps and scores; and a norm's statistics.
  uint64_t decoder_map_bytes_per_image(int64_t S) const;
  static constexpr uint64_t kDecoderPassBytes = uint64_t{128} << 20;
  static constexpr int kGroupNormGroups = 32;  // every GroupNorm of the tokenizer

  // The decoder's own memory for passes of up to `images` images of an S×S
  // latent (decoder_map_bytes_per_image each, and the arena's padding),
  // every pass's maps lie in it. It is `idle` when that holds it (memory
  // nothing else uses while the decoder runs), else allocated: then it
  // holds decoder_arena_bytes.
  MapArena new_decoder_arena(int64_t S, int64_t images, const Array<float>& idle = {}) const;
  uint64_t decoder_arena_bytes(int64_t S, int64_t images) const;
  // Whether new_decoder_arena places the arena in idle memory of that many
  // bytes (and allocates nothing for it).
  bool decoder_arena_fits(int64_t S, int64_t images, uint64_t idle_bytes) const;
  // One pass: img[n, 3, H, W] = the decoder of f_hat[n, Cvae, S, S] (n up
  // to the arena's images), every map in `arena`. It allocates nothing, so
  // a backend may record it.
  void decode_pass(const FeatureMap& f_hat, MapArena& arena, const FeatureMap& img) const;
  // The latents and images of each pass of decode(f_hat, images_per_pass),
  // as parts of f_hat and img.
  struct DecoderPass {
    FeatureMap f_hat, img;
  };
  static std::vector<DecoderPass> decoder_passes(const FeatureMap& f_hat, const FeatureMap& img,
                                                 int64_t images_per_pass);
  // [n, 3, H, W] for the images of f_hat[n, Cvae, S, S], and its bytes.
  FeatureMap new_image_map(const FeatureMap& f_hat) const;
  uint64_t image_map_bytes(int64_t n, int64_t S) const;
  // quant_conv(encoder(img)): [N, 3, H, W] in [-1, 1] → [N, Cvae, h, w]
  FeatureMap encode(const FeatureMap& img) const;

  // ---- multi-scale residual path ----
  // Index of the Phi convolution used at scale si of `num_scales`.
  int phi_index(int si, int num_scales) const;
  // Maps for the residual path of n images of an S×S latent, and their bytes.
  ResidualMaps new_residual_maps(int64_t n, int64_t S) const;
  uint64_t residual_map_bytes(int64_t n, int64_t S) const;
  // f_hat[N, Cvae, S, S] += Phi(upsample(codebook[idx])) for scale si with
  // token map idx[N, pn, pn] (no upsampling at the last scale), in `maps`.
  // When `residual` is given, it is reduced by the same amount.
  void add_scale(int si, const std::vector<int>& patch_nums, const int32_t* idx, FeatureMap& f_hat,
                 const ResidualMaps& maps, FeatureMap* residual = nullptr) const;
  // Next scale's input tokens [N, pn², Cvae] = area-downsampled f_hat, by way
  // of maps.scale_map.
  void next_scale_tokens(const FeatureMap& f_hat, int pn, const ResidualMaps& maps, float* tokens) const;
  // Multi-scale quantisation of f[N, Cvae, S, S]: token maps per scale
  // ([N, pn²] each) and the final f_hat.
  std::vector<std::vector<int32_t>> quantize(const FeatureMap& f, const std::vector<int>& patch_nums,
                                             FeatureMap* f_hat_out = nullptr) const;

  // For the residual path and decode() of an S×S latent, per image: the
  // largest im2col matrix of a k > 1 convolution and the largest input of a
  // 1×1 one (the convolutions as they run, in elements).
  WorkspaceDemand decoder_conv_demand(int64_t S) const;
  // Every convolution of decode() of an S×S latent in the order they run
  // (after the residual path's Phi convolutions when `with_phi`), with the
  // side of its square, stride-1 output; each attention block's (channels,
  // side) before its projection; and each residual block before its
  // convolutions. Read from decoder_layers(), as decode_pass runs them.
  void for_each_decoder_layer(int64_t S, bool with_phi,
                              const std::function<void(const Conv2dWeights&, int64_t side)>& on_conv,
                              const std::function<void(int64_t channels, int64_t side)>& on_attention,
                              const std::function<void(const ResBlock&, int64_t side)>& on_res_block = {}) const;

  FeatureMap new_map(int64_t n, int64_t c, int64_t h, int64_t w) const;  // contents undefined
  FeatureMap zero_map(int64_t n, int64_t c, int64_t h, int64_t w) const;

 private:
  // One step of the decoder: the one description of its layer order, from
  // which decode_pass runs it and for_each_decoder_layer describes it.
  struct DecoderLayer {
    enum class Kind {
      Conv,        // a same-size convolution
      Res,         // a residual block
      Attn,        // an attention block
      Upsample,    // nearest 2× upsampling, then `conv`
      NormConvOut  // conv(SiLU(GN(h))) into the image, then the clamp to [-1, 1]
    };
    Kind kind;
    const Conv2dWeights* conv = nullptr;    // Conv, Upsample, NormConvOut
    const ResBlock* res = nullptr;          // Res
    const AttnBlock* attn = nullptr;        // Attn
    const GroupNormWeights* norm = nullptr; // NormConvOut
  };
  // post_quant_conv, conv_in, the middle (res, attention, res), each level
  // from the coarsest (its blocks with their attention, then the
  // upsampling of every level but the finest), and the output norm and
  // convolution.
  std::vector<DecoderLayer> decoder_layers() const;
  // The layers take their maps from `maps`, each placed so that it does
  // not disturb the maps it must live with (MapStore).
  // A convolution of x into a map opposite x.
  FeatureMap conv(const FeatureMap& x, const Conv2dWeights& cw, MapStore& maps, int stride = 1, int pad_t = -1,
                  int pad_l = -1, int pad_b = -1, int pad_r = -1) const;
  // A stride-1, same-size convolution into y, which has its shape.
  void conv_into(const FeatureMap& x, const Conv2dWeights& cw, const FeatureMap& y) const;
  // y = conv(SiLU(GN(x))) of a same-size convolution (y += ... with
  // `add`), the norm applied as the convolution reads x.
  void normalized_conv(const FeatureMap& x, const GroupNormWeights& gn, const Conv2dWeights& cw, const FeatureMap& y,
                       bool add, MapStore& maps) const;
  // Consumes x: without a shortcut convolution the block's output is x's
  // memory, so a caller passes a map it no longer needs (std::move).
  FeatureMap res_block(FeatureMap x, const ResBlock& rb, MapStore& maps) const;
  FeatureMap attn_block(const FeatureMap& x, const AttnBlock& ab, MapStore& maps) const;
  FeatureMap run_level(FeatureMap h, const ResLevel& level, MapStore& maps) const;
  // The maps' elements of decoder_map_bytes_per_image (the rest is a
  // norm's kNormStatsFloats).
  uint64_t decoder_map_floats_per_image(int64_t S) const;
  // The arena's elements for passes of up to `images` images.
  uint64_t decoder_arena_floats(int64_t S, int64_t images) const;
  static constexpr uint64_t kNormStatsFloats = 2 * kGroupNormGroups;
  // The most maps a decoder layer holds at once (an attention block: its
  // input, q/k/v, its output before the projection, and one more).
  static constexpr int kDecoderMapsAlive = 4;
  // h = (1 − r)·h + r·Phi(h), Phi's output in `conv_out`.
  void apply_phi(int phi, const FeatureMap& h, const FeatureMap& conv_out) const;

  Backend& be_;
  VaeConfig cfg_;
  bool encoder_loaded_ = false;
  uint64_t weight_bytes_ = 0, parameters_ = 0;
  Conv2dWeights quant_conv_, post_quant_conv_;
  Array<float> codebook_;  // [V, Cvae]
  std::vector<Conv2dWeights> phi_;
  // decoder
  Conv2dWeights dec_conv_in_, dec_conv_out_;
  ResBlock dec_mid_1_, dec_mid_2_;
  std::vector<AttnBlock> dec_mid_attn_;  // zero or one
  std::vector<ResLevel> dec_up_;         // indexed by level (0 = full resolution)
  GroupNormWeights dec_norm_out_;
  // encoder
  Conv2dWeights enc_conv_in_, enc_conv_out_;
  ResBlock enc_mid_1_, enc_mid_2_;
  std::vector<AttnBlock> enc_mid_attn_;
  std::vector<ResLevel> enc_down_;
  GroupNormWeights enc_norm_out_;
};

}  // namespace varps
