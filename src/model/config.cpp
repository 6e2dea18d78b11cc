// Hyper-parameters inferred from tensor names and shapes, and the presets.
#include "varps/config.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "varps/checkpoint.hpp"
#include "varps/error.hpp"

namespace varps {

namespace {

std::string join(const std::vector<int>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(v[i]);
  }
  return s;
}

const TensorRecord& need(const Checkpoint& ckpt, const std::string& name, size_t ndim, const char* what) {
  const TensorRecord* r = ckpt.find(name);
  if (!r)
    throw Error(ckpt.path().string() + ": not a " + what + " checkpoint: tensor '" + name + "' is missing");
  if (r->shape.size() != ndim)
    throw Error(ckpt.path().string() + ": tensor '" + name + "' has shape " + shape_str(r->shape) + ", expected " +
                std::to_string(ndim) + " dimensions");
  for (int64_t d : r->shape)
    if (d <= 0 || d > (int64_t{1} << 31))
      throw Error(ckpt.path().string() + ": tensor '" + name + "' has an implausible shape " + shape_str(r->shape));
  return *r;
}

int count_indexed(const Checkpoint& ckpt, const std::string& prefix, const std::string& suffix) {
  int n = 0;
  while (ckpt.contains(prefix + std::to_string(n) + suffix)) ++n;
  return n;
}

// patch_nums from the lvl_1L buffer (scale id of every position), or from
// the released tables when the buffer was dropped.
std::vector<int> infer_patch_nums(const Checkpoint& ckpt, int64_t L, int64_t num_scales) {
  if (const TensorRecord* rec = ckpt.find("lvl_1L")) {
    TensorI64 lvl = ckpt.read_i64(*rec);
    std::vector<int> counts(static_cast<size_t>(num_scales), 0);
    int64_t prev = 0;
    for (int64_t v : lvl.data) {
      if (v < prev || v >= num_scales)
        throw Error(ckpt.path().string() + ": tensor 'lvl_1L' is not a non-decreasing list of scale ids < " +
                    std::to_string(num_scales));
      prev = v;
      ++counts[static_cast<size_t>(v)];
    }
    std::vector<int> pn;
    for (int c : counts) {
      const int side = static_cast<int>(std::lround(std::sqrt(static_cast<double>(c))));
      if (side <= 0 || side * side != c)
        throw Error(ckpt.path().string() + ": tensor 'lvl_1L' gives a scale of " + std::to_string(c) +
                    " tokens, not a square");
      pn.push_back(side);
    }
    if (static_cast<int64_t>(lvl.data.size()) != L)
      throw Error(ckpt.path().string() + ": 'lvl_1L' has " + std::to_string(lvl.data.size()) +
                  " positions but 'pos_1LC' has " + std::to_string(L));
    return pn;
  }
  for (const auto& pn : {released_patch_nums_256(), std::vector<int>{1, 2, 3, 4, 6, 9, 13, 18, 24, 32}}) {
    int64_t total = 0;
    for (int p : pn) total += p * p;
    if (total == L && static_cast<int64_t>(pn.size()) == num_scales) return pn;
  }
  throw Error(ckpt.path().string() + ": cannot infer patch_nums: no 'lvl_1L' and L=" + std::to_string(L) +
              " with " + std::to_string(num_scales) + " scales matches no released configuration");
}

}  // namespace

int VarConfig::total_tokens() const {
  int L = 0;
  for (int p : patch_nums) L += p * p;
  return L;
}

int VarConfig::max_scale_tokens() const {
  int m = 0;
  for (int p : patch_nums) m = std::max(m, p * p);
  return m;
}

int VarConfig::first_token_of_scale(int si) const {
  int L = 0;
  for (int i = 0; i < si; ++i) L += patch_nums[i] * patch_nums[i];
  return L;
}

std::string VarConfig::describe() const {
  std::ostringstream os;
  os << "VAR depth " << depth << ", C " << embed_dim << ", heads " << num_heads << " x " << head_dim << ", mlp "
     << mlp_hidden << ", vocab " << vocab_size << ", Cvae " << cvae << ", classes " << num_classes
     << ", patch_nums " << join(patch_nums) << " (L " << total_tokens() << ")"
     << (shared_aln ? ", shared AdaLN" : "") << (attn_l2_norm ? ", L2-norm attention" : "");
  return os.str();
}

std::string VaeConfig::describe() const {
  std::ostringstream os;
  const char* phi = phi_layout == PhiLayout::None            ? "none"
                    : phi_layout == PhiLayout::Shared          ? "shared"
                    : phi_layout == PhiLayout::PartiallyShared ? "partially shared"
                                                               : "non-shared";
  os << "VQVAE vocab " << vocab_size << ", Cvae " << cvae << ", ch " << ch << ", ch_mult " << join(ch_mult)
     << ", res blocks " << encoder_res_blocks << " (encoder) / " << decoder_res_blocks << " (decoder), Phi "
     << num_phi << " (" << phi << "), downsample " << downsample();
  return os.str();
}

VarConfig infer_var_config(const Checkpoint& ckpt) {
  const char* what = "VAR";
  VarConfig c;
  const auto& we = need(ckpt, "word_embed.weight", 2, what);
  c.embed_dim = static_cast<int>(we.shape[0]);
  c.cvae = static_cast<int>(we.shape[1]);
  c.num_classes = static_cast<int>(need(ckpt, "class_emb.weight", 2, what).shape[0]) - 1;
  c.vocab_size = static_cast<int>(need(ckpt, "head.weight", 2, what).shape[0]);
  c.depth = count_indexed(ckpt, "blocks.", ".attn.mat_qkv.weight");
  if (c.depth == 0) throw Error(ckpt.path().string() + ": not a VAR checkpoint: no 'blocks.0.attn.mat_qkv.weight'");
  c.mlp_hidden = static_cast<int>(need(ckpt, "blocks.0.ffn.fc1.weight", 2, what).shape[0]);
  c.attn_l2_norm = ckpt.contains("blocks.0.attn.scale_mul_1H11");
  c.num_heads = c.attn_l2_norm ? static_cast<int>(need(ckpt, "blocks.0.attn.scale_mul_1H11", 4, what).shape[1])
                               : c.embed_dim / 64;
  if (c.num_heads <= 0 || c.embed_dim % c.num_heads != 0)
    throw Error(ckpt.path().string() + ": embed_dim " + std::to_string(c.embed_dim) + " is not divisible by " +
                std::to_string(c.num_heads) + " heads");
  c.head_dim = c.embed_dim / c.num_heads;
  c.shared_aln = ckpt.contains("shared_ada_lin.1.weight");
  const auto& pos = need(ckpt, "pos_1LC", 3, what);
  const auto& lvl = need(ckpt, "lvl_embed.weight", 2, what);
  c.patch_nums = infer_patch_nums(ckpt, pos.shape[1], lvl.shape[0]);
  return c;
}

VaeConfig infer_vae_config(const Checkpoint& ckpt) {
  const char* what = "VQVAE";
  VaeConfig c;
  const auto& emb = need(ckpt, "quantize.embedding.weight", 2, what);
  c.vocab_size = static_cast<int>(emb.shape[0]);
  c.cvae = static_cast<int>(emb.shape[1]);
  const int levels = count_indexed(ckpt, "decoder.up.", ".block.0.conv1.weight");
  if (levels == 0) throw Error(ckpt.path().string() + ": not a VQVAE checkpoint: no 'decoder.up.0.block.0.conv1.weight'");
  c.decoder_res_blocks = count_indexed(ckpt, "decoder.up.0.block.", ".conv1.weight");
  c.encoder_res_blocks = count_indexed(ckpt, "encoder.down.0.block.", ".conv1.weight");
  // The decoder's last conv reads ch * ch_mult[0] channels; the encoder's
  // first conv writes ch. Without an encoder, assume ch_mult[0] = 1.
  c.ch = c.encoder_res_blocks > 0 ? static_cast<int>(need(ckpt, "encoder.conv_in.weight", 4, what).shape[0])
                                  : static_cast<int>(need(ckpt, "decoder.conv_out.weight", 4, what).shape[1]);
  for (int i = 0; i < levels; ++i) {
    const auto& w = need(ckpt, "decoder.up." + std::to_string(i) + ".block.0.conv1.weight", 4, what);
    if (w.shape[0] % c.ch != 0)
      throw Error(ckpt.path().string() + ": 'decoder.up." + std::to_string(i) + ".block.0.conv1.weight' has " +
                  std::to_string(w.shape[0]) + " outputs, not a multiple of ch " + std::to_string(c.ch));
    c.ch_mult.push_back(static_cast<int>(w.shape[0] / c.ch));
  }
  c.using_sa = ckpt.contains("decoder.up." + std::to_string(levels - 1) + ".attn.0.qkv.weight");
  c.using_mid_sa = ckpt.contains("decoder.mid.attn_1.qkv.weight");
  c.quant_conv_ks = static_cast<int>(need(ckpt, "quant_conv.weight", 4, what).shape[2]);
  if (ckpt.contains("quantize.quant_resi.qresi_ls.0.weight")) {
    c.phi_layout = PhiLayout::PartiallyShared;
    c.num_phi = count_indexed(ckpt, "quantize.quant_resi.qresi_ls.", ".weight");
  } else if (ckpt.contains("quantize.quant_resi.qresi.weight")) {
    c.phi_layout = PhiLayout::Shared;
    c.num_phi = 1;
  } else if (ckpt.contains("quantize.quant_resi.0.weight")) {
    c.phi_layout = PhiLayout::NonShared;
    c.num_phi = count_indexed(ckpt, "quantize.quant_resi.", ".weight");
  } else {
    c.phi_layout = PhiLayout::None;
    c.num_phi = 0;
  }
  return c;
}

std::vector<int> released_patch_nums_256() { return {1, 2, 3, 4, 5, 6, 8, 10, 13, 16}; }

std::vector<std::string> preset_names() { return {"tiny", "d16", "d20", "d24", "d30", "d36"}; }

VarConfig preset_var_config(const std::string& name) {
  VarConfig c;
  if (name == "tiny") {
    c.depth = 2;
    c.embed_dim = 128;
    c.num_heads = 2;
    c.num_classes = 10;
    c.vocab_size = 64;
    c.cvae = 8;
    c.patch_nums = {1, 2, 3, 4};
  } else {
    int depth = 0;
    if (name == "d16") depth = 16;
    if (name == "d20") depth = 20;
    if (name == "d24") depth = 24;
    if (name == "d30") depth = 30;
    if (name == "d36") depth = 36;
    if (depth == 0) {
      std::string known;
      for (const auto& n : preset_names()) {
        if (!known.empty()) known += ", ";
        known += n;
      }
      throw Error("unknown preset '" + name + "' (known: " + known + ")");
    }
    c.depth = depth;
    c.embed_dim = 64 * depth;
    c.num_heads = depth;
    c.num_classes = 1000;
    c.vocab_size = 4096;
    c.cvae = 32;
    c.patch_nums = depth == 36 ? std::vector<int>{1, 2, 3, 4, 6, 9, 13, 18, 24, 32} : released_patch_nums_256();
    c.shared_aln = depth == 36;
  }
  c.head_dim = c.embed_dim / c.num_heads;
  c.mlp_hidden = 4 * c.embed_dim;
  return c;
}

VaeConfig preset_vae_config(const std::string& name) {
  VaeConfig c;
  if (name == "tiny") {
    c.vocab_size = 64;
    c.cvae = 8;
    c.ch = 32;
    c.ch_mult = {1, 2};
    c.encoder_res_blocks = 1;
    c.decoder_res_blocks = 2;
  } else {
    preset_var_config(name);  // validates the name
    c.vocab_size = 4096;
    c.cvae = 32;
    c.ch = 160;
    c.ch_mult = {1, 1, 2, 2, 4};
    c.encoder_res_blocks = 2;
    c.decoder_res_blocks = 3;
  }
  return c;
}

}  // namespace varps
