// The typed entry of every backend op: the views are checked against each
// other here, once for all backends, and the extents they agree on are what
// the backend's implementation receives.
#include <string>

#include "backend.hpp"

namespace varps {

namespace {

template <typename T>
const float* floats(View<T> v) {
  return reinterpret_cast<const float*>(v.data);
}
template <typename T>
float* mutable_floats(View<T> v) {
  return reinterpret_cast<float*>(v.data);
}

// An optional per-column vector: empty, or [n] in backend memory.
void expect_optional(const char* op, const char* name, const View<const float>& v, int64_t n) {
  if (!v.empty()) expect_dims(op, name, v, {n});
}

void expect_same_count(const char* op, const char* a, int64_t na, const char* b, int64_t nb) {
  if (na != nb)
    check_view(false, op,
               std::string(a) + " has " + std::to_string(na) + " elements but " + b + " has " + std::to_string(nb));
}

template <typename T>
void expect_backend(const char* op, const char* name, const View<T>& v) {
  check_view(v.data != nullptr || v.numel() == 0, op, std::string(name) + " is missing");
  check_view(v.memory == Memory::Backend, op, std::string(name) + " is host memory, expected the backend's");
  check_view(v.contiguous(), op, std::string(name) + " must be contiguous");
}

// v as the matrix [rows, last dimension] it is in memory; it must be
// contiguous.
template <typename T>
View<T> flattened(const char* op, const char* name, View<T> v) {
  check_view(v.contiguous(), op, std::string(name) + " must be contiguous");
  View<T> m = view(v.data, {v.rows(), v.cols()});
  m.memory = v.memory;
  return m;
}

}  // namespace

Backend::ConvGeometry Backend::ConvGeometry::same(int64_t k) {
  const int p = static_cast<int>(k / 2);
  return {1, p, p, p, p};
}

// ---- dense algebra ----

namespace {
struct LinearExtents {
  int64_t M, K, N;
};
LinearExtents check_linear(const char* op, View<const float> x, View<const MatrixElement> w, View<const float> b,
                           View<float> y) {
  check_view(w.rank == 2, op, "w is " + dims_text(w) + ", expected [N, K]");
  const int64_t N = w.dim(0), K = w.dim(1), M = x.rows();
  expect_dims(op, "x", x, {M, K});
  expect_optional(op, "b", b, N);
  expect_dims(op, "y", y, {M, N});
  expect_backend(op, "w", w);
  return {M, K, N};
}
}  // namespace

void Backend::linear(View<const float> x, View<const MatrixElement> w, View<const float> b, View<float> y) {
  x = flattened("linear", "x", x);
  y = flattened("linear", "y", y);
  const LinearExtents e = check_linear("linear", x, w, b, y);
  do_linear(x.data, e.M, e.K, floats(w), b.data, e.N, y.data);
}

void Backend::linear_gelu(View<const float> x, View<const MatrixElement> w, View<const float> b, View<float> y) {
  x = flattened("linear_gelu", "x", x);
  y = flattened("linear_gelu", "y", y);
  const LinearExtents e = check_linear("linear_gelu", x, w, b, y);
  do_linear_gelu(x.data, e.M, e.K, floats(w), b.data, e.N, y.data);
}

void Backend::mlp(View<const float> x, const MlpWeights& w, View<float> hidden, View<float> y) {
  const char* op = "mlp";
  check_view(w.w1.rank == 2 && w.w2.rank == 2, op, "w1 and w2 must be matrices");
  const int64_t M = x.rows(), C = w.w1.dim(1), H = w.w1.dim(0), N = w.w2.dim(0);
  expect_dims(op, "x", flattened(op, "x", x), {M, C});
  expect_dims(op, "w2", w.w2, {N, H});
  expect_optional(op, "b1", w.b1, H);
  expect_optional(op, "b2", w.b2, N);
  expect_dims(op, "hidden", flattened(op, "hidden", hidden), {M, H});
  expect_dims(op, "y", flattened(op, "y", y), {M, N});
  do_mlp(x.data, M, C, floats(w.w1), w.b1.data, H, floats(w.w2), w.b2.data, N, hidden.data, y.data);
}

void Backend::gemm(View<const float> A, View<const float> B, View<float> C, const GemmScalars& s) {
  const char* op = "gemm";
  check_view(A.rank == 2 && B.rank == 2 && C.rank == 2, op, "A, B and C must be matrices");
  const int64_t M = C.dim(0), N = C.dim(1);
  const int64_t K = s.trans_a ? A.dim(0) : A.dim(1);
  const int64_t a_rows = s.trans_a ? K : M, a_cols = s.trans_a ? M : K;
  const int64_t b_rows = s.trans_b ? N : K, b_cols = s.trans_b ? K : N;
  expect_dims(op, "A", A, {a_rows, a_cols}, true);
  expect_dims(op, "B", B, {b_rows, b_cols}, true);
  expect_dims(op, "C", C, {M, N}, true);
  do_gemm(s.trans_a, s.trans_b, M, N, K, s.alpha, A.data, A.row_stride, B.data, B.row_stride, s.beta, C.data,
          C.row_stride);
}

// ---- elementwise ----

void Backend::silu(View<const float> x, View<float> y) {
  expect_backend("silu", "x", x);
  expect_backend("silu", "y", y);
  expect_same_count("silu", "x", x.numel(), "y", y.numel());
  do_silu(x.data, static_cast<size_t>(x.numel()), y.data);
}

void Backend::gelu_tanh_inplace(View<float> x) {
  expect_backend("gelu_tanh_inplace", "x", x);
  do_gelu_tanh_inplace(x.data, static_cast<size_t>(x.numel()));
}

void Backend::add_inplace(View<float> y, View<const float> x) {
  expect_backend("add_inplace", "y", y);
  expect_backend("add_inplace", "x", x);
  expect_same_count("add_inplace", "y", y.numel(), "x", x.numel());
  do_add_inplace(y.data, x.data, static_cast<size_t>(y.numel()));
}

void Backend::axpby_inplace(View<float> y, float a, View<const float> x, float b) {
  expect_backend("axpby_inplace", "y", y);
  expect_backend("axpby_inplace", "x", x);
  expect_same_count("axpby_inplace", "y", y.numel(), "x", x.numel());
  do_axpby_inplace(y.data, a, x.data, b, static_cast<size_t>(y.numel()));
}

void Backend::add_scaled_rows(View<float> y, View<const float> x, View<const float> v) {
  const char* op = "add_scaled_rows";
  check_view(y.rank == 3, op, "y is " + dims_text(y) + ", expected [rows, tokens, C]");
  const int64_t rows = y.dim(0), tokens = y.dim(1), C = y.dim(2);
  expect_dims(op, "y", y, {rows, tokens, C});
  expect_dims(op, "x", x, {rows, tokens, C});
  expect_dims(op, "v", v, {rows, C}, true);
  do_add_scaled_rows(y.data, x.data, v.data, v.row_stride, rows, tokens, C);
}

void Backend::add_broadcast_rows(View<float> y, View<const float> v) {
  const char* op = "add_broadcast_rows";
  check_view(y.rank == 3, op, "y is " + dims_text(y) + ", expected [rows, tokens, C]");
  const int64_t rows = y.dim(0), tokens = y.dim(1), C = y.dim(2);
  expect_dims(op, "y", y, {rows, tokens, C});
  expect_dims(op, "v", v, {tokens, C});
  do_add_broadcast_rows(y.data, v.data, rows, tokens, C);
}

void Backend::softmax_rows(View<float> x) {
  expect_backend("softmax_rows", "x", x);
  do_softmax_rows(x.data, x.rows(), x.cols());
}

// ---- transformer ----

namespace {
struct TokenExtents {
  int64_t rows, tokens, C;
};
TokenExtents check_modulated(const char* op, View<const float> x, const Backend::Modulation& m, View<float> out) {
  check_view(x.rank == 3, op, "x is " + dims_text(x) + ", expected [rows, tokens, C]");
  const int64_t rows = x.dim(0), tokens = x.dim(1), C = x.dim(2);
  expect_dims(op, "x", x, {rows, tokens, C});
  expect_dims(op, "scale", m.scale, {rows, C}, true);
  expect_dims(op, "shift", m.shift, {rows, C}, true);
  check_view(m.scale.row_stride == m.shift.row_stride, op, "scale and shift must be slices of one modulation");
  expect_dims(op, "out", out, {rows, tokens, C});
  return {rows, tokens, C};
}
}  // namespace

void Backend::adaln_modulate(View<const float> x, const Modulation& m, View<float> out) {
  const TokenExtents e = check_modulated("adaln_modulate", x, m, out);
  do_adaln_modulate(x.data, e.rows, e.tokens, e.C, m.scale.data, m.shift.data, m.scale.row_stride, m.eps, out.data);
}

void Backend::add_scaled_rows_then_adaln(View<float> x, View<const float> delta, View<const float> gamma,
                                         const Modulation& m, View<float> out) {
  const char* op = "add_scaled_rows_then_adaln";
  const TokenExtents e = check_modulated(op, x, m, out);
  expect_dims(op, "delta", delta, {e.rows, e.tokens, e.C});
  expect_dims(op, "gamma", gamma, {e.rows, e.C}, true);
  do_add_scaled_rows_then_adaln(x.data, delta.data, gamma.data, gamma.row_stride, e.rows, e.tokens, e.C, m.scale.data,
                                m.shift.data, m.scale.row_stride, m.eps, out.data);
}

void Backend::split_qkv_to_cache(View<const float> qkv, const QkvToCache& a, View<float> q, View<KvElement> k_cache,
                                 View<KvElement> v_cache) {
  const char* op = "split_qkv_to_cache";
  check_view(q.rank == 4 && k_cache.rank == 4, op, "q and the caches are [rows, H, tokens or capacity, hd]");
  const int64_t rows = q.dim(0), H = q.dim(1), tokens = q.dim(2), hd = q.dim(3), capacity = k_cache.dim(2);
  expect_dims(op, "qkv", qkv, {rows, tokens, 3 * H * hd});
  expect_dims(op, "k_cache", k_cache, {rows, H, capacity, hd});
  expect_dims(op, "v_cache", v_cache, {rows, H, capacity, hd});
  check_view(a.pos >= 0 && a.pos + tokens <= capacity, op,
             "positions " + std::to_string(a.pos) + ".." + std::to_string(a.pos + tokens) + " beyond the capacity " +
                 std::to_string(capacity));
  if (a.l2norm) {
    check_view(a.q_scale.rank == 1 && a.q_scale.dim(0) == H && a.q_scale.data, op,
               "q_scale must hold one factor per head");
    check_view(a.q_scale.memory == Memory::Host, op, "q_scale travels with the launch: host memory");
  }
  do_split_qkv_to_cache(qkv.data, rows, tokens, H, hd, a.l2norm, a.q_scale.data, q.data, mutable_floats(k_cache),
                        mutable_floats(v_cache), capacity, a.pos);
}

void Backend::attention(View<const float> q, View<const KvElement> k_cache, View<const KvElement> v_cache,
                        const AttentionArgs& a, View<float> out) {
  const char* op = "attention";
  check_view(q.rank == 4 && k_cache.rank == 4, op, "q and the caches are [rows, H, tokens or capacity, hd]");
  const int64_t rows = q.dim(0), H = q.dim(1), tokens = q.dim(2), hd = q.dim(3), capacity = k_cache.dim(2);
  expect_dims(op, "k_cache", k_cache, {rows, H, capacity, hd});
  expect_dims(op, "v_cache", v_cache, {rows, H, capacity, hd});
  expect_dims(op, "out", out, {rows, tokens, H * hd});
  check_view(a.len >= tokens && a.len <= capacity, op,
             "attends to " + std::to_string(a.len) + " positions with " + std::to_string(tokens) +
                 " new ones and a capacity of " + std::to_string(capacity));
  check_view(a.prefix.tokens == 0 || (a.prefix.k && a.prefix.v && a.prefix.rows_per_stream > 0), op,
             "a prefix needs its keys, values and rows per stream");
  do_attention(q.data, floats(k_cache), floats(v_cache), rows, H, tokens, hd, capacity, a.len, a.scale, a.prefix,
               out.data);
}

// ---- ParScale aggregation ----

void Backend::interleave_streams(View<const float> h, View<float> z) {
  const char* op = "interleave_streams";
  check_view(h.rank == 3, op, "h is " + dims_text(h) + ", expected [P, M, C]");
  const int64_t P = h.dim(0), M = h.dim(1), C = h.dim(2);
  expect_dims(op, "h", h, {P, M, C});
  expect_dims(op, "z", z, {M, C * P});
  do_interleave_streams(h.data, P, M, C, z.data);
}

void Backend::stream_weights(View<float> a, double smooth) {
  check_view(a.rank == 2, "stream_weights", "a is " + dims_text(a) + ", expected [M, P]");
  expect_dims("stream_weights", "a", a, {a.dim(0), a.dim(1)});
  do_stream_weights(a.data, a.dim(0), a.dim(1), smooth);
}

void Backend::weighted_stream_sum(View<const float> h, View<const float> w, View<float> out) {
  const char* op = "weighted_stream_sum";
  check_view(h.rank == 3, op, "h is " + dims_text(h) + ", expected [P, M, C]");
  const int64_t P = h.dim(0), M = h.dim(1), C = h.dim(2);
  expect_dims(op, "h", h, {P, M, C});
  expect_dims(op, "w", w, {M, P});
  expect_dims(op, "out", out, {M, C});
  do_weighted_stream_sum(h.data, w.data, P, M, C, out.data);
}

// ---- guidance and sampling ----

void Backend::guidance(View<const float> logits, View<const SampleJob> jobs, double ratio,
                       View<const int64_t> uncond_row, View<float> out) {
  const char* op = "guidance";
  check_view(out.rank == 2, op, "out is " + dims_text(out) + ", expected [B, l·V]");
  const int64_t B = out.dim(0), lV = out.dim(1);
  expect_dims(op, "out", out, {B, lV});
  check_view(
      logits.rank == 2 && logits.dim(1) == lV && logits.dim(0) >= B, op,
      "logits is " + dims_text(logits) + ", expected [R >= " + std::to_string(B) + ", " + std::to_string(lV) + "]");
  expect_backend(op, "logits", logits);
  expect_dims(op, "jobs", jobs, {B});
  check_view(uncond_row.rank == 1 && uncond_row.dim(0) == B && uncond_row.memory == Memory::Host, op,
             "uncond_row must be host memory with one entry per image");
  for (int64_t b = 0; b < B; ++b)
    check_view(uncond_row.data[b] < logits.dim(0), op,
               "image " + std::to_string(b) + "'s unconditional row " + std::to_string(uncond_row.data[b]) +
                   " is beyond the logits' rows");
  do_guidance(logits.data, B, lV, jobs.data, ratio, uncond_row.data, out.data);
}

void Backend::sample(View<float> logits, View<const SampleJob> jobs, const SampleArgs& a, View<int32_t> idx) {
  const char* op = "sample";
  check_view(logits.rank == 3, op, "logits is " + dims_text(logits) + ", expected [B, l, V]");
  const int64_t B = logits.dim(0), l = logits.dim(1), V = logits.dim(2);
  expect_dims(op, "logits", logits, {B, l, V});
  expect_dims(op, "jobs", jobs, {B});
  expect_dims(op, "idx", idx, {B, l});
  do_sample(logits.data, B, l, V, jobs.data, a.filters, a.scale_index, idx.data);
}

// ---- image-space ops ----

void Backend::conv2d(View<const float> x, View<const MatrixElement> w, View<const float> b, const ConvGeometry& g,
                     View<float> out) {
  const char* op = "conv2d";
  check_view(x.rank == 4 && w.rank == 4 && w.dim(2) == w.dim(3), op,
             "x is " + dims_text(x) + " and w " + dims_text(w) + ", expected [N, Ci, H, W] and [Co, Ci, k, k]");
  const int64_t N = x.dim(0), Ci = x.dim(1), H = x.dim(2), W = x.dim(3), Co = w.dim(0), k = w.dim(2);
  check_view(g.stride >= 1 && g.pad_t >= 0 && g.pad_l >= 0 && g.pad_b >= 0 && g.pad_r >= 0, op,
             "stride must be positive and padding non-negative");
  const int64_t Ho = (H + g.pad_t + g.pad_b - k) / g.stride + 1, Wo = (W + g.pad_l + g.pad_r - k) / g.stride + 1;
  expect_dims(op, "x", x, {N, Ci, H, W});
  expect_dims(op, "w", w, {Co, Ci, k, k});
  expect_optional(op, "b", b, Co);
  expect_dims(op, "out", out, {N, Co, Ho, Wo});
  do_conv2d(x.data, N, Ci, H, W, floats(w), b.data, Co, static_cast<int>(k), g.stride, g.pad_t, g.pad_l, g.pad_b,
            g.pad_r, out.data);
}

void Backend::normalized_conv2d(View<const float> x, const NormOnRead& norm, View<const MatrixElement> w,
                                View<const float> b, bool add_to_out, View<float> out) {
  const char* op = "normalized_conv2d";
  check_view(x.rank == 4 && w.rank == 4 && w.dim(2) == w.dim(3) && w.dim(2) % 2 == 1, op,
             "x is " + dims_text(x) + " and w " + dims_text(w) + ", expected [N, Ci, H, W] and [Co, Ci, k, k], k odd");
  const int64_t N = x.dim(0), Ci = x.dim(1), H = x.dim(2), W = x.dim(3), Co = w.dim(0), k = w.dim(2);
  expect_dims(op, "x", x, {N, Ci, H, W});
  expect_dims(op, "w", w, {Co, Ci, k, k});
  expect_optional(op, "b", b, Co);
  expect_dims(op, "out", out, {N, Co, H, W});
  check_view(norm.groups > 0 && Ci % norm.groups == 0 && norm.stats && norm.gamma && norm.beta, op,
             "the norm needs statistics, gamma and beta, and groups dividing the " + std::to_string(Ci) + " channels");
  do_normalized_conv2d(x.data, N, Ci, H, W, norm, floats(w), b.data, Co, static_cast<int>(k), add_to_out, out.data);
}

void Backend::group_norm_stats(View<const float> x, int groups, float eps, View<float> stats) {
  const char* op = "group_norm_stats";
  check_view(x.rank == 3, op, "x is " + dims_text(x) + ", expected [N, C, HW]");
  const int64_t N = x.dim(0), C = x.dim(1), HW = x.dim(2);
  expect_dims(op, "x", x, {N, C, HW});
  check_view(groups > 0 && C % groups == 0, op, std::to_string(groups) + " groups do not divide " + std::to_string(C));
  expect_dims(op, "stats", stats, {N, groups, 2});
  do_group_norm_stats(x.data, N, C, HW, groups, eps, stats.data);
}

void Backend::group_norm(View<const float> x, const GroupNormArgs& a, View<float> out) {
  const char* op = "group_norm";
  check_view(x.rank == 3, op, "x is " + dims_text(x) + ", expected [N, C, HW]");
  const int64_t N = x.dim(0), C = x.dim(1), HW = x.dim(2);
  expect_dims(op, "x", x, {N, C, HW});
  check_view(a.groups > 0 && C % a.groups == 0, op,
             std::to_string(a.groups) + " groups do not divide " + std::to_string(C));
  expect_dims(op, "gamma", a.gamma, {C});
  expect_dims(op, "beta", a.beta, {C});
  expect_dims(op, "out", out, {N, C, HW});
  do_group_norm(x.data, N, C, HW, a.groups, a.gamma.data, a.beta.data, a.eps, a.then_silu, out.data);
}

namespace {
struct Planes {
  int64_t NC, H, W;
};
Planes check_planes(const char* op, const char* name, View<const float> v) {
  check_view(v.rank == 3, op, std::string(name) + " is " + dims_text(v) + ", expected [NC, H, W]");
  expect_dims(op, name, v, {v.dim(0), v.dim(1), v.dim(2)});
  return {v.dim(0), v.dim(1), v.dim(2)};
}
}  // namespace

void Backend::upsample_nearest2x(View<const float> x, View<float> out) {
  const Planes p = check_planes("upsample_nearest2x", "x", x);
  expect_dims("upsample_nearest2x", "out", out, {p.NC, 2 * p.H, 2 * p.W});
  do_upsample_nearest2x(x.data, p.NC, p.H, p.W, out.data);
}

void Backend::upsample_bicubic(View<const float> x, View<float> out) {
  const Planes in = check_planes("upsample_bicubic", "x", x), o = check_planes("upsample_bicubic", "out", out);
  check_view(in.NC == o.NC, "upsample_bicubic", "x and out must have the same planes");
  do_upsample_bicubic(x.data, in.NC, in.H, in.W, o.H, o.W, out.data);
}

void Backend::downsample_area(View<const float> x, View<float> out) {
  const Planes in = check_planes("downsample_area", "x", x), o = check_planes("downsample_area", "out", out);
  check_view(in.NC == o.NC && o.H >= 1 && o.W >= 1 && o.H <= in.H && o.W <= in.W, "downsample_area",
             "out " + dims_text(out) + " is not a downsampling of x " + dims_text(x));
  do_downsample_area(x.data, in.NC, in.H, in.W, o.H, o.W, out.data);
}

void Backend::chw_to_tokens(View<const float> x, View<float> out) {
  const char* op = "chw_to_tokens";
  check_view(x.rank == 3, op, "x is " + dims_text(x) + ", expected [N, C, P]");
  const int64_t N = x.dim(0), C = x.dim(1), P = x.dim(2);
  expect_dims(op, "x", x, {N, C, P});
  expect_dims(op, "out", out, {N, P, C});
  do_chw_to_tokens(x.data, N, C, P, out.data);
}

void Backend::embed_chw(View<const float> table, View<const int32_t> idx, View<float> out) {
  const char* op = "embed_chw";
  check_view(table.rank == 2 && idx.rank == 2, op, "table is [V, C] and idx [N, P]");
  const int64_t C = table.dim(1), N = idx.dim(0), P = idx.dim(1);
  expect_dims(op, "table", table, {table.dim(0), C});
  expect_dims(op, "idx", idx, {N, P});
  expect_dims(op, "out", out, {N, C, P});
  do_embed_chw(table.data, C, idx.data, N, P, out.data);
}

void Backend::gather_rows(View<const float> table, View<const int32_t> idx, View<float> out) {
  const char* op = "gather_rows";
  check_view(table.rank == 2 && idx.rank == 1, op, "table is [V, C] and idx [n]");
  const int64_t C = table.dim(1), n = idx.dim(0);
  expect_dims(op, "table", table, {table.dim(0), C});
  expect_dims(op, "idx", idx, {n});
  expect_dims(op, "out", out, {n, C});
  do_gather_rows(table.data, C, idx.data, n, out.data);
}

void Backend::nearest_code(View<const float> z, View<const float> codebook, View<int32_t> idx) {
  const char* op = "nearest_code";
  check_view(z.rank == 2 && codebook.rank == 2, op, "z is [n, C] and the codebook [V, C]");
  const int64_t n = z.dim(0), C = z.dim(1), V = codebook.dim(0);
  expect_dims(op, "z", z, {n, C});
  expect_dims(op, "codebook", codebook, {V, C});
  expect_dims(op, "idx", idx, {n});
  do_nearest_code(z.data, n, codebook.data, V, C, idx.data);
}

void Backend::clamp(View<float> x, float lo, float hi) {
  expect_backend("clamp", "x", x);
  do_clamp(x.data, static_cast<size_t>(x.numel()), lo, hi);
}

void Backend::fill_zero(View<float> x) {
  expect_backend("fill_zero", "x", x);
  do_fill_zero(x.data, static_cast<size_t>(x.numel()));
}

}  // namespace varps
