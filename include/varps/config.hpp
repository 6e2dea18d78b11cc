#pragma once
// Model hyper-parameters. Inferred from a checkpoint's tensors (names and
// shapes), or taken from a released preset for random-weight timing runs.
#include <string>
#include <vector>

namespace varps {

class Checkpoint;

struct VarConfig {
  int depth = 0;
  int embed_dim = 0;  // C
  int num_heads = 0;
  int head_dim = 0;
  int mlp_hidden = 0;
  int num_classes = 0;  // class id num_classes is the unconditional class
  int vocab_size = 0;   // V
  int cvae = 0;         // token embedding width of the tokenizer
  std::vector<int> patch_nums;  // side of each scale's token map
  bool shared_aln = false;
  bool attn_l2_norm = true;
  float norm_eps = 1e-6f;

  int num_scales() const { return static_cast<int>(patch_nums.size()); }
  int total_tokens() const;  // L = sum(pn^2)
  int max_scale_tokens() const;  // tokens of the largest scale
  int first_token_of_scale(int si) const;
  std::string describe() const;  // one line, for logs and `inspect`
};

enum class PhiLayout { None, Shared, PartiallyShared, NonShared };

struct VaeConfig {
  int vocab_size = 0;
  int cvae = 0;
  int ch = 0;
  std::vector<int> ch_mult;
  int encoder_res_blocks = 0;  // 0 when the checkpoint has no encoder
  int decoder_res_blocks = 0;
  bool using_sa = true;      // attention at the lowest resolution level
  bool using_mid_sa = true;  // attention in the middle block
  int quant_conv_ks = 3;
  PhiLayout phi_layout = PhiLayout::PartiallyShared;
  int num_phi = 4;
  // Not stored in checkpoints; every released tokenizer uses 0.5.
  float quant_resi = 0.5f;

  bool has_encoder() const { return encoder_res_blocks > 0; }
  int downsample() const { return 1 << (static_cast<int>(ch_mult.size()) - 1); }
  std::string describe() const;
};

VarConfig infer_var_config(const Checkpoint& ckpt);
VaeConfig infer_vae_config(const Checkpoint& ckpt);

// Released sizes: "d16", "d20", "d24", "d30", "d36"; "tiny" is the built-in
// toy model. Throws varps::Error for an unknown name.
VarConfig preset_var_config(const std::string& name);
VaeConfig preset_vae_config(const std::string& name);
std::vector<std::string> preset_names();

// The released 256px patch_nums (1,2,3,4,5,6,8,10,13,16).
std::vector<int> released_patch_nums_256();

}  // namespace varps
