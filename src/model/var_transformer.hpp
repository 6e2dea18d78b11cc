#pragma once
// The VAR transformer, mirroring the checkpoint's names: class embedding,
// AdaLN blocks with L2-normalised attention over a per-row KV cache, and the
// AdaLN head. One call of `forward_scale` (or `forward_scales`) runs every block on the new tokens
// of one scale for all rows at once.
#include <vector>

#include "backend.hpp"
#include "model/stream_adapter.hpp"
#include "model/weights.hpp"
#include "varps/config.hpp"

namespace varps {

struct VarBlock {
  Array<MatrixElement> ada_lin_w;  // [6C, C] (absent with shared AdaLN)
  Array<float> ada_lin_b;          // [6C]
  Array<float> ada_gss;            // [6C] (shared AdaLN only)
  Array<MatrixElement> mat_qkv_w;  // [3C, C]
  Array<float> qkv_bias;           // [3C] = cat(q_bias, zero_k_bias, v_bias)
  std::vector<float> q_scale;      // [H] exp(min(scale_mul_1H11, log 100)), host
  Array<MatrixElement> proj_w;     // [C, C]
  Array<float> proj_b;             // [C]
  Array<MatrixElement> fc1_w;      // [hidden, C]
  Array<float> fc1_b;              // [hidden]
  Array<MatrixElement> fc2_w;      // [C, hidden]
  Array<float> fc2_b;              // [C]
};

// A block's activations for up to `tokens` token rows, in two arrays by
// lifetime (block_forward): `ln` holds the modulated LN output, then each
// projection's output once that has been read (proj is ln); the other holds
// qkv with q beside it, then the attention output over qkv's start
// (split_qkv_to_cache has read it), then the MLP hidden. A session has one
// for its own rows at the largest scale; a pass over several sessions' rows
// (forward_scales) uses one for all of them.
struct BlockWork {
  int64_t tokens = 0;
  Array<float> ln, qkv, q, attn, proj, hidden;
};

// BlockWork's arrays, in elements.
struct BlockWorkArrays {
  uint64_t ln = 0, work = 0, q_offset = 0;
};

// The state of a generation: R rows (conditional rows first, then the
// unconditional ones), their AdaLN modulation (computed once per request, it
// depends only on the class), the KV cache for all scales and the activation
// workspace sized for the largest scale. Allocated once and reused by every
// later request of the same shape, so its arrays keep their addresses. With a ParScale adapter
// the N image rows are replicated for every stream, stream-major
// (row p·N + j), and the aggregation folds them back to N rows before the
// head.
struct VarSession {
  int64_t rows = 0;        // R = streams · image_rows
  int64_t image_rows = 0;  // N
  int64_t streams = 1;     // P
  const StreamAdapter* adapter = nullptr;
  Array<int32_t> class_ids;             // [R]
  Array<float> cond;                    // [R, C] class embeddings
  Array<float> cond_act;                // [R, C] SiLU(cond)
  Array<float> shared_mod;              // [R, 6C] with shared AdaLN: the modulation before each block's gss
  std::vector<Array<float>> block_mod;  // per block [R, 6C]: gamma1, gamma2, scale1, scale2, shift1, shift2
  Array<float> head_mod;                // [R, 2C]: scale, shift
  // per block [R, H, L, hd], stored as the backend chooses (alloc_kv_cache),
  // all in one allocation of kv_bytes
  std::vector<Array<KvElement>> k_cache, v_cache;
  Array<KvElement> kv_memory;
  uint64_t kv_bytes = 0;
  BlockWork work;  // for R rows at the largest scale
  // ParScale aggregation workspace ([N·l, ·] at the largest scale).
  Array<float> agg_z, agg_hidden, agg_weights, agg_out;  // P·C, C, P, C per position
};

// The arrays of a VarSession, in elements: new_session allocates exactly
// these, and a request's memory plan adds up their bytes, so the two cannot
// disagree.
struct SessionArrays {
  int64_t rows = 0, image_rows = 0, streams = 1;  // R = P·N, N, P
  uint64_t class_ids = 0;                         // int32
  uint64_t cond = 0, cond_act = 0, shared_mod = 0, head_mod = 0;
  uint64_t block_mod = 0;  // each of `blocks`
  int64_t blocks = 0;
  uint64_t kv_cache = 0;  // every block's keys and values, at Backend::kv_element_bytes
  BlockWorkArrays work;  // a block's activations at the largest scale
  uint64_t agg_z = 0, agg_hidden = 0, agg_weights = 0, agg_out = 0;  // with an adapter
  uint64_t kv_bytes(const Backend& be) const;
  uint64_t activation_bytes(const Backend& be) const;  // everything but the KV cache
};

class VarTransformer {
 public:
  VarTransformer(Backend& backend, const VarConfig& config, WeightSource& weights);
  const VarConfig& config() const { return cfg_; }

  // A session for `image_rows` rows, each replicated for every stream of
  // `adapter` when one is given; begin() fills it for a request.
  VarSession new_session(int64_t image_rows, const StreamAdapter* adapter = nullptr) const;
  SessionArrays session_arrays(int64_t image_rows, const StreamAdapter* adapter = nullptr) const;
  // Throws varps::Error unless every class is in 0..num_classes
  // (num_classes = unconditional).
  void check_classes(const std::vector<int32_t>& row_classes) const;
  // The class embeddings and modulation of image rows of classes
  // `row_classes`, one per image row, after check_classes(row_classes).
  void begin(VarSession& s, const std::vector<int32_t>& row_classes) const;
  // x[R, 1, C] = cond + pos_start + lvl_embed[0] + pos_1LC[0]
  void first_scale_input(const VarSession& s, float* x) const;
  // x[R, l, C] for scale si from the previous f_hat's tokens f[images, l, Cvae]:
  // image row j < images is image j, every later image row j is image
  // row_image[j] (N entries); every stream's rows read the same input.
  void scale_input(const VarSession& s, const float* f_tokens, int64_t images, int si,
                   const std::vector<int64_t>& row_image, float* x) const;
  // One session's rows in a pass, alone (forward_scale) or beside others'
  // (forward_scales).
  // By default a pass runs every row of the session on all of scale si's
  // tokens, its keys after the earlier scales'. The fast modes
  // (varps/fast_modes.hpp) narrow it: the first `rows` rows only (the
  // conditional ones), `tokens` tokens per row (the kept ones, x compacted
  // to [rows, tokens, C]) whose keys go after `cached` keys.
  struct ScalePass {
    const VarSession* session;
    float* x;
    int si;
    float* logits;              // [rows, tokens, V]; null: no head
    int64_t rows = -1;          // -1: session->rows
    int64_t tokens = -1;        // -1: scale si's
    int64_t cached = -1;        // -1: the tokens of scales before si
    float* hidden_out = nullptr;  // the head's input [rows, tokens, C], when set
  };
  // The pass with its defaults filled in.
  ScalePass resolved(ScalePass p) const;
  // Token rows the pass puts through the backbone.
  int64_t pass_tokens(const ScalePass& p) const;
  // Every block on p.x [rows, tokens, C] (in place) for scale p.si, after the
  // earlier scales filled the KV cache; p.logits [N, l, V] (the streams
  // aggregated per image row under an adapter), in the session's own
  // workspace. Only enqueues backend ops on the session's arrays, so a
  // backend may record it once and replay it.
  void forward_scale(const ScalePass& p) const;
  // The head alone on its input h [rows·l, C] (as hidden_out gives it):
  // logits [rows·l, V]. Without an adapter.
  void head(const float* h, int64_t tokens, float* logits) const;
  // forward_scale for every pass at once, each at its own scale with its own
  // KV cache: the matrix products of all their rows run as one product per
  // weight, the per-row ops (cache writes, attention, modulation) on each
  // pass's rows. `work` holds every pass's tokens (Σ R·l). A row's results
  // are forward_scale's, as the products are batch-invariant.
  void forward_scales(const std::vector<ScalePass>& passes, const BlockWork& work) const;
  BlockWorkArrays block_work_arrays(int64_t tokens) const;
  BlockWork new_block_work(int64_t tokens) const;
  // Token rows of a pass at scale si for a session of `rows` rows.
  int64_t scale_tokens(int64_t rows, int si) const;

  uint64_t weight_bytes() const { return weight_bytes_; }
  uint64_t parameters() const { return parameters_; }  // elements uploaded, whatever their precision

 private:
  void block_forward(const std::vector<ScalePass>& passes, const BlockWork& w, int b) const;
  // h[R, l, C] → out[N, l, C], and the weights into s.agg_weights.
  void aggregate_streams(const VarSession& s, const float* h, int64_t l, float* out) const;

  Backend& be_;
  VarConfig cfg_;
  uint64_t weight_bytes_ = 0, parameters_ = 0;
  Array<MatrixElement> word_embed_w_;         // [C, Cvae]
  Array<float> word_embed_b_;                 // [C]
  Array<float> class_emb_;                    // [num_classes + 1, C]
  Array<float> pos_start_;                    // [C]
  Array<float> lvl_pos_;                      // [L, C] = lvl_embed[scale of position] + pos_1LC
  Array<MatrixElement> shared_ada_w_;         // [6C, C] (shared AdaLN only)
  Array<float> shared_ada_b_;                 // [6C]
  std::vector<VarBlock> blocks_;
  Array<MatrixElement> head_nm_w_;  // [2C, C]
  Array<float> head_nm_b_;          // [2C]
  Array<MatrixElement> head_w_;     // [V, C]
  Array<float> head_b_;             // [V]
};

}  // namespace varps
