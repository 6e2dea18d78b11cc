#include "model/var_transformer.hpp"

#include <algorithm>
#include <cmath>

#include "varps/error.hpp"

namespace varps {

VarTransformer::VarTransformer(Backend& be, const VarConfig& c, WeightSource& w) : be_(be), cfg_(c) {
  const int64_t C = c.embed_dim, L = c.total_tokens(), H = c.num_heads, hid = c.mlp_hidden;
  auto upload = [&](const Tensor& t) {
    weight_bytes_ += be_.array_bytes(t.data.size(), sizeof(float));
    parameters_ += t.data.size();
    return be_.upload(t);
  };
  auto up = [&](const std::string& name, const Shape& shape) { return upload(w.take(name, shape)); };
  // Weights that are only ever the w of a linear(): kept at the backend's
  // matrix-product precision.
  auto up_matrix = [&](const std::string& name, const Shape& shape) -> Array<MatrixElement> {
    const Tensor t = w.take(name, shape);
    weight_bytes_ += be_.matrix_bytes(t.shape);
    parameters_ += t.data.size();
    return be_.upload_matrix(t);
  };
  word_embed_w_ = up_matrix("word_embed.weight", {C, c.cvae});
  word_embed_b_ = up("word_embed.bias", {C});
  class_emb_ = up("class_emb.weight", {c.num_classes + 1, C});
  pos_start_ = up("pos_start", {1, 1, C});
  {
    Tensor pos = w.take("pos_1LC", {1, L, C});
    Tensor lvl = w.take("lvl_embed.weight", {c.num_scales(), C});
    for (int si = 0; si < c.num_scales(); ++si) {
      const int64_t begin = c.first_token_of_scale(si), end = c.first_token_of_scale(si + 1);
      for (int64_t p = begin; p < end; ++p)
        for (int64_t k = 0; k < C; ++k) pos.data[p * C + k] = lvl.data[si * C + k] + pos.data[p * C + k];
    }
    lvl_pos_ = upload(pos);
  }
  if (c.shared_aln) {
    shared_ada_w_ = up_matrix("shared_ada_lin.1.weight", {6 * C, C});
    shared_ada_b_ = up("shared_ada_lin.1.bias", {6 * C});
  }
  const float max_scale_mul = std::log(100.0f);  // float32, as torch.log(torch.tensor(100)).item()
  for (int i = 0; i < c.depth; ++i) {
    const std::string p = "blocks." + std::to_string(i) + ".";
    VarBlock b;
    if (c.shared_aln) {
      b.ada_gss = up(p + "ada_gss", {1, 1, 6, C});
    } else {
      b.ada_lin_w = up_matrix(p + "ada_lin.1.weight", {6 * C, C});
      b.ada_lin_b = up(p + "ada_lin.1.bias", {6 * C});
    }
    b.mat_qkv_w = up_matrix(p + "attn.mat_qkv.weight", {3 * C, C});
    Tensor qkv_bias({3 * C});
    const Tensor qb = w.take(p + "attn.q_bias", {C});
    const Tensor kb = w.take(p + "attn.zero_k_bias", {C});
    const Tensor vb = w.take(p + "attn.v_bias", {C});
    std::copy(qb.data.begin(), qb.data.end(), qkv_bias.data.begin());
    std::copy(kb.data.begin(), kb.data.end(), qkv_bias.data.begin() + C);
    std::copy(vb.data.begin(), vb.data.end(), qkv_bias.data.begin() + 2 * C);
    b.qkv_bias = upload(qkv_bias);
    if (c.attn_l2_norm) {
      const Tensor sm = w.take(p + "attn.scale_mul_1H11", {1, H, 1, 1});
      for (float v : sm.data) b.q_scale.push_back(std::exp(std::min(v, max_scale_mul)));
    } else {
      b.q_scale.assign(static_cast<size_t>(H), 1.0f);
    }
    b.proj_w = up_matrix(p + "attn.proj.weight", {C, C});
    b.proj_b = up(p + "attn.proj.bias", {C});
    b.fc1_w = up_matrix(p + "ffn.fc1.weight", {hid, C});
    b.fc1_b = up(p + "ffn.fc1.bias", {hid});
    b.fc2_w = up_matrix(p + "ffn.fc2.weight", {C, hid});
    b.fc2_b = up(p + "ffn.fc2.bias", {C});
    blocks_.push_back(std::move(b));
  }
  head_nm_w_ = up_matrix("head_nm.ada_lin.1.weight", {2 * C, C});
  head_nm_b_ = up("head_nm.ada_lin.1.bias", {2 * C});
  head_w_ = up_matrix("head.weight", {c.vocab_size, C});
  head_b_ = up("head.bias", {c.vocab_size});
}

uint64_t SessionArrays::kv_bytes(const Backend& be) const { return be.array_bytes(kv_cache, be.kv_element_bytes()); }

uint64_t SessionArrays::activation_bytes(const Backend& be) const {
  const auto f = [&](uint64_t n) { return be.array_bytes(n, sizeof(float)); };
  uint64_t b = be.array_bytes(class_ids, sizeof(int32_t)) + f(cond) + f(cond_act) + f(head_mod) +
               static_cast<uint64_t>(blocks) * f(block_mod) + f(work.ln) + f(work.work);
  if (shared_mod) b += f(shared_mod);
  if (agg_z) b += f(agg_z) + f(agg_hidden) + f(agg_weights) + f(agg_out);
  return b;
}

SessionArrays VarTransformer::session_arrays(int64_t image_rows, const StreamAdapter* adapter) const {
  const uint64_t N = static_cast<uint64_t>(image_rows), C = static_cast<uint64_t>(cfg_.embed_dim);
  const uint64_t P = adapter ? static_cast<uint64_t>(adapter->streams) : 1, R = P * N;
  const uint64_t L = static_cast<uint64_t>(cfg_.total_tokens()), max_l = static_cast<uint64_t>(cfg_.max_scale_tokens());
  SessionArrays a;
  a.rows = static_cast<int64_t>(R);
  a.image_rows = image_rows;
  a.streams = static_cast<int64_t>(P);
  a.class_ids = R;
  a.cond = a.cond_act = R * C;
  a.shared_mod = cfg_.shared_aln ? R * 6 * C : 0;
  a.block_mod = R * 6 * C;
  a.blocks = cfg_.depth;
  a.head_mod = R * 2 * C;
  a.kv_cache = 2 * static_cast<uint64_t>(cfg_.depth) * R * L * C;
  a.work = block_work_arrays(static_cast<int64_t>(R * max_l));
  if (adapter) {
    const uint64_t m = N * max_l;
    a.agg_z = m * P * C;
    a.agg_hidden = m * C;
    a.agg_weights = m * P;
    a.agg_out = m * C;
  }
  return a;
}

BlockWorkArrays VarTransformer::block_work_arrays(int64_t tokens) const {
  // ln (then each projection's output), and one array by lifetime: qkv with
  // q beside it on 256 bytes, then the attention output, then the MLP hidden.
  const uint64_t n = static_cast<uint64_t>(tokens), C = static_cast<uint64_t>(cfg_.embed_dim);
  BlockWorkArrays a;
  a.ln = n * C;
  a.q_offset = (n * 3 * C + 63) / 64 * 64;
  a.work = std::max(a.q_offset + n * C, n * static_cast<uint64_t>(cfg_.mlp_hidden));
  return a;
}

BlockWork VarTransformer::new_block_work(int64_t tokens) const {
  const BlockWorkArrays a = block_work_arrays(tokens);
  const size_t n = static_cast<size_t>(tokens), C = static_cast<size_t>(cfg_.embed_dim);
  BlockWork w;
  w.tokens = tokens;
  w.ln = be_.alloc(a.ln);
  w.proj = w.ln;
  const Array<float> work = be_.alloc(a.work);
  w.qkv = work.slice(0, n * 3 * C);
  w.q = work.slice(a.q_offset, n * C);
  w.attn = work.slice(0, n * C);
  w.hidden = work.slice(0, n * static_cast<size_t>(cfg_.mlp_hidden));
  return w;
}

int64_t VarTransformer::scale_tokens(int64_t rows, int si) const {
  return rows * cfg_.patch_nums.at(static_cast<size_t>(si)) * cfg_.patch_nums.at(static_cast<size_t>(si));
}

VarSession VarTransformer::new_session(int64_t image_rows, const StreamAdapter* adapter) const {
  const SessionArrays a = session_arrays(image_rows, adapter);
  VarSession s;
  s.rows = a.rows;
  s.image_rows = a.image_rows;
  s.streams = a.streams;
  s.adapter = adapter;
  s.class_ids = be_.alloc_i32(a.class_ids);
  s.cond = be_.alloc(a.cond);
  s.cond_act = be_.alloc(a.cond_act);
  if (a.shared_mod) s.shared_mod = be_.alloc(a.shared_mod);
  for (int64_t i = 0; i < a.blocks; ++i) s.block_mod.push_back(be_.alloc(a.block_mod));
  s.head_mod = be_.alloc(a.head_mod);
  const size_t stored = be_.kv_element_bytes(), cache = a.kv_cache / (2 * static_cast<uint64_t>(a.blocks));
  s.kv_memory = be_.alloc_kv_cache(a.kv_cache);
  s.kv_bytes = a.kv_cache * stored;
  for (size_t i = 0; i < static_cast<size_t>(a.blocks); ++i) {
    s.k_cache.push_back(s.kv_memory.slice_stored(2 * i * cache, cache, stored));
    s.v_cache.push_back(s.kv_memory.slice_stored((2 * i + 1) * cache, cache, stored));
  }
  s.work = new_block_work(static_cast<int64_t>(a.work.ln / static_cast<uint64_t>(cfg_.embed_dim)));
  if (adapter) {
    s.agg_z = be_.alloc(a.agg_z);
    s.agg_hidden = be_.alloc(a.agg_hidden);
    s.agg_weights = be_.alloc(a.agg_weights);
    s.agg_out = be_.alloc(a.agg_out);
  }
  return s;
}

void VarTransformer::check_classes(const std::vector<int32_t>& row_classes) const {
  for (int32_t cls : row_classes)
    if (cls < 0 || cls > cfg_.num_classes)
      throw Error("class " + std::to_string(cls) + " is out of range: the model has classes 0.." +
                  std::to_string(cfg_.num_classes - 1) + " and " + std::to_string(cfg_.num_classes) +
                  " (unconditional)");
}

void VarTransformer::begin(VarSession& s, const std::vector<int32_t>& image_row_classes) const {
  const int64_t C = cfg_.embed_dim, R = s.rows;
  VARPS_CHECK(static_cast<int64_t>(image_row_classes.size()) == s.image_rows, "one class per image row");
  std::vector<int32_t> row_classes;  // stream-major: row p·N + j is image row j
  for (int64_t p = 0; p < s.streams; ++p)
    row_classes.insert(row_classes.end(), image_row_classes.begin(), image_row_classes.end());
  be_.upload_into_i32(row_classes.data(), row_classes.size(), s.class_ids.data());
  be_.gather_rows(class_emb_.as({cfg_.num_classes + 1, C}), s.class_ids.as({R}), s.cond.as({R, C}));

  const View<float> act = s.cond_act.as({R, C});
  be_.silu(s.cond.as({R, C}), act);
  if (cfg_.shared_aln)
    be_.linear(act, shared_ada_w_.as({6 * C, C}), shared_ada_b_.as({6 * C}), s.shared_mod.as({R, 6 * C}));
  for (size_t i = 0; i < blocks_.size(); ++i) {
    const VarBlock& b = blocks_[i];
    const Array<float>& mod = s.block_mod[i];
    if (cfg_.shared_aln) {
      be_.copy(s.shared_mod.data(), static_cast<size_t>(R * 6 * C), mod.data());
      be_.add_broadcast_rows(mod.as({R, 1, 6 * C}), b.ada_gss.as({1, 6 * C}));
    } else {
      be_.linear(act, b.ada_lin_w.as({6 * C, C}), b.ada_lin_b.as({6 * C}), mod.as({R, 6 * C}));
    }
  }
  be_.linear(act, head_nm_w_.as({2 * C, C}), head_nm_b_.as({2 * C}), s.head_mod.as({R, 2 * C}));
}

void VarTransformer::first_scale_input(const VarSession& s, float* x) const {
  const int64_t C = cfg_.embed_dim;
  be_.copy(s.cond.data(), static_cast<size_t>(s.rows * C), x);
  be_.add_broadcast_rows(view(x, {s.rows, 1, C}), pos_start_.as({1, C}));
  be_.add_broadcast_rows(view(x, {s.rows, 1, C}), lvl_pos_.as({1, C}));
}

void VarTransformer::scale_input(const VarSession& s, const float* f_tokens, int64_t images, int si,
                                 const std::vector<int64_t>& row_image, float* x) const {
  const int64_t C = cfg_.embed_dim, l = int64_t{cfg_.patch_nums[si]} * cfg_.patch_nums[si];
  VARPS_CHECK(static_cast<int64_t>(row_image.size()) == s.image_rows, "one image per image row");
  be_.linear(view(f_tokens, {images * l, cfg_.cvae}), word_embed_w_.as({C, cfg_.cvae}), word_embed_b_.as({C}),
             view(x, {images * l, C}));
  be_.add_broadcast_rows(view(x, {images, l, C}), view(lvl_pos_.data() + cfg_.first_token_of_scale(si) * C, {l, C}));
  for (size_t r = static_cast<size_t>(images); r < row_image.size(); ++r) {
    VARPS_CHECK(row_image[r] >= 0 && row_image[r] < images, "row maps to an image");
    be_.copy(x + row_image[r] * l * C, static_cast<size_t>(l * C), x + static_cast<int64_t>(r) * l * C);
  }
  const size_t block = static_cast<size_t>(s.image_rows * l * C);
  for (int64_t p = 1; p < s.streams; ++p) be_.copy(x, block, x + p * static_cast<int64_t>(block));
}

void VarTransformer::block_forward(const std::vector<ScalePass>& passes, const BlockWork& w, int bi) const {
  const VarBlock& b = blocks_[bi];
  const int64_t C = cfg_.embed_dim, H = cfg_.num_heads, hd = cfg_.head_dim, hid = cfg_.mlp_hidden;
  const int64_t L = cfg_.total_tokens();
  const float eps = cfg_.norm_eps;
  const bool last = bi + 1 == cfg_.depth;
  // Each pass's rows: where its tokens start in w, and its geometry.
  struct Rows {
    const VarSession& s;
    float* x;
    int64_t R, l, cached, first;
  };
  std::vector<Rows> parts;
  int64_t M = 0;  // every pass's tokens
  for (const ScalePass& given : passes) {
    const ScalePass p = resolved(given);
    parts.push_back({*p.session, p.x, p.rows, p.tokens, p.cached, M});
    M += p.rows * p.tokens;
  }
  // A pass's rows in one of w's arrays of `width` elements per token.
  const auto at = [](const Array<float>& a, const Rows& r, int64_t width) { return a.data() + r.first * width; };

  // x = x + proj(attn(LN(x)·(1+scale1) + shift1))·gamma1, the modulated LN
  // already in w.ln (forward_scales or the previous block). Every pass's
  // qkv is read into its cache before any attention output lands over it.
  be_.linear(w.ln.as({M, C}), b.mat_qkv_w.as({3 * C, C}), b.qkv_bias.as({3 * C}), w.qkv.as({M, 3 * C}));
  for (const Rows& r : parts)
    be_.split_qkv_to_cache(view(at(w.qkv, r, 3 * C), {r.R, r.l, 3 * C}),
                           {r.cached, cfg_.attn_l2_norm, host_view(b.q_scale.data(), {H})},
                           view(at(w.q, r, C), {r.R, H, r.l, hd}), r.s.k_cache[bi].as({r.R, H, L, hd}),
                           r.s.v_cache[bi].as({r.R, H, L, hd}));
  for (const Rows& r : parts) {
    Backend::AttentionArgs attn{r.cached + r.l,
                                cfg_.attn_l2_norm ? 1.0f : 0.25f / std::sqrt(static_cast<float>(hd)), {}};
    if (r.s.adapter && r.s.adapter->prefix_tokens > 0)
      attn.prefix = {r.s.adapter->prefix_k[bi].data(), r.s.adapter->prefix_v[bi].data(), r.s.adapter->prefix_tokens,
                     r.s.image_rows};
    be_.attention(view(at(w.q, r, C), {r.R, H, r.l, hd}), r.s.k_cache[bi].as({r.R, H, L, hd}),
                  r.s.v_cache[bi].as({r.R, H, L, hd}), attn, view(at(w.attn, r, C), {r.R, r.l, C}));
  }
  be_.linear(w.attn.as({M, C}), b.proj_w.as({C, C}), b.proj_b.as({C}), w.proj.as({M, C}));
  for (const Rows& r : parts) {
    // A row's modulation: gamma1, gamma2, scale1, scale2, shift1, shift2.
    const float* mod = r.s.block_mod[bi].data();
    const auto part = [&](const float* p, int64_t stride) { return view(p, {r.R, C}, stride); };
    be_.add_scaled_rows_then_adaln(view(r.x, {r.R, r.l, C}), view(at(w.proj, r, C), {r.R, r.l, C}),
                                   part(mod, 6 * C), {part(mod + 3 * C, 6 * C), part(mod + 5 * C, 6 * C), eps},
                                   view(at(w.ln, r, C), {r.R, r.l, C}));
  }

  // x = x + fc2(GELU(fc1(LN(x)·(1+scale2) + shift2)))·gamma2, then the
  // modulated LN of what reads x next: the next block, or the head.
  be_.mlp(w.ln.as({M, C}), {b.fc1_w.as({hid, C}), b.fc1_b.as({hid}), b.fc2_w.as({C, hid}), b.fc2_b.as({C})},
          w.hidden.as({M, hid}), w.proj.as({M, C}));
  for (const Rows& r : parts) {
    const float* mod = r.s.block_mod[bi].data();
    const auto part = [&](const float* p, int64_t stride) { return view(p, {r.R, C}, stride); };
    const Backend::Modulation next =
        last ? Backend::Modulation{part(r.s.head_mod.data(), 2 * C), part(r.s.head_mod.data() + C, 2 * C), eps}
             : Backend::Modulation{part(r.s.block_mod[bi + 1].data() + 2 * C, 6 * C),
                                   part(r.s.block_mod[bi + 1].data() + 4 * C, 6 * C), eps};
    be_.add_scaled_rows_then_adaln(view(r.x, {r.R, r.l, C}), view(at(w.proj, r, C), {r.R, r.l, C}),
                                   part(mod + C, 6 * C), next, view(at(w.ln, r, C), {r.R, r.l, C}));
  }
}

void VarTransformer::aggregate_streams(const VarSession& s, const float* h, int64_t l, float* out) const {
  // z = the streams' states side by side; a = aggregate.2(SiLU(aggregate.0(z)));
  // w = softmax(a)·(1−s) + s/P; out = Σ_p w_p·h_p.
  const StreamAdapter& a = *s.adapter;
  const int64_t P = s.streams, M = s.image_rows * l, C = cfg_.embed_dim;
  const View<const float> streams = view(h, {P, M, C});
  be_.interleave_streams(streams, s.agg_z.as({M, P * C}));
  be_.linear(s.agg_z.as({M, P * C}), a.aggregate0_w.as({C, P * C}), a.aggregate0_b.as({C}), s.agg_hidden.as({M, C}));
  be_.silu(s.agg_hidden.as({M, C}), s.agg_hidden.as({M, C}));
  be_.linear(s.agg_hidden.as({M, C}), a.aggregate2_w.as({P, C}), a.aggregate2_b.as({P}), s.agg_weights.as({M, P}));
  be_.stream_weights(s.agg_weights.as({M, P}), a.smooth);
  be_.weighted_stream_sum(streams, s.agg_weights.as({M, P}), view(out, {M, C}));
}

void VarTransformer::forward_scale(const ScalePass& p) const { forward_scales({p}, p.session->work); }

VarTransformer::ScalePass VarTransformer::resolved(ScalePass p) const {
  const VarSession& s = *p.session;
  if (p.rows < 0) p.rows = s.rows;
  if (p.tokens < 0) p.tokens = scale_tokens(1, p.si);
  if (p.cached < 0) p.cached = cfg_.first_token_of_scale(p.si);
  VARPS_CHECK(p.rows >= 1 && p.rows <= s.rows, "a pass runs 1 to all of its session's rows");
  VARPS_CHECK(p.tokens >= 1 && p.tokens <= scale_tokens(1, p.si), "a pass runs 1 to all of its scale's tokens");
  VARPS_CHECK(p.cached >= 0 && p.cached + p.tokens <= cfg_.total_tokens(), "a pass's keys fit the cache");
  VARPS_CHECK(p.rows == s.rows || !s.adapter, "a pass over some rows only runs without an adapter");
  return p;
}

int64_t VarTransformer::pass_tokens(const ScalePass& p) const {
  const ScalePass r = resolved(p);
  return r.rows * r.tokens;
}

void VarTransformer::head(const float* h, int64_t tokens, float* logits) const {
  const int64_t C = cfg_.embed_dim;
  be_.linear(view(h, {tokens, C}), head_w_.as({cfg_.vocab_size, C}), head_b_.as({cfg_.vocab_size}),
             view(logits, {tokens, cfg_.vocab_size}));
}

void VarTransformer::forward_scales(const std::vector<ScalePass>& given, const BlockWork& w) const {
  const int64_t C = cfg_.embed_dim;
  std::vector<ScalePass> passes;
  int64_t tokens = 0;
  for (const ScalePass& p : given) {
    passes.push_back(resolved(p));
    tokens += passes.back().rows * passes.back().tokens;
  }
  if (tokens > w.tokens)
    throw Error("a pass of " + std::to_string(tokens) + " token rows over a workspace for " + std::to_string(w.tokens));
  // Each block leaves the next one's modulated LN in w.ln, and the last the
  // head's: LN(x)·(1+scale) + shift, modulation from the raw class embedding.
  int64_t first = 0;
  for (const ScalePass& p : passes) {
    const VarSession& s = *p.session;
    const int64_t R = p.rows, l = p.tokens;
    const float* mod0 = s.block_mod[0].data();
    be_.adaln_modulate(view(p.x, {R, l, C}),
                       {view(mod0 + 2 * C, {R, C}, 6 * C), view(mod0 + 4 * C, {R, C}, 6 * C), cfg_.norm_eps},
                       view(w.ln.data() + first * C, {R, l, C}));
    first += R * l;
  }
  for (int bi = 0; bi < cfg_.depth; ++bi) block_forward(passes, w, bi);
  first = 0;
  for (const ScalePass& p : passes) {
    const VarSession& s = *p.session;
    const int64_t l = p.tokens;
    const float* h = w.ln.data() + first * C;
    first += p.rows * l;
    if (s.adapter) {
      aggregate_streams(s, h, l, s.agg_out.data());
      h = s.agg_out.data();
    }
    const int64_t M = (s.adapter ? s.image_rows : p.rows) * l;
    if (p.hidden_out) be_.copy(h, static_cast<size_t>(M * C), p.hidden_out);
    if (p.logits) head(h, M, p.logits);
  }
}

}  // namespace varps
