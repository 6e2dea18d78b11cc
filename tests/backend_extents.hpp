#pragma once
// The backend ops spelled with extents, for tests and benchmarks that sweep
// shapes over raw arrays: each builds the views the op takes from the
// extents and calls the op through its typed, checked entry, so the
// checks run on every call here too.
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "backend.hpp"

namespace varps::extents {

inline View<const float> maybe(const float* b, int64_t n) { return b ? view(b, {n}) : View<const float>{}; }
template <typename T>
View<const MatrixElement> matrix(const T* w, std::initializer_list<int64_t> dims) {
  return as_matrix(view(reinterpret_cast<const float*>(w), dims));
}

template <typename W>
void linear(Backend& be, const float* x, int64_t M, int64_t K, const W* w, const float* b, int64_t N, float* y) {
  be.linear(view(x, {M, K}), matrix(w, {N, K}), maybe(b, N), view(y, {M, N}));
}
template <typename W>
void linear_gelu(Backend& be, const float* x, int64_t M, int64_t K, const W* w, const float* b, int64_t N, float* y) {
  be.linear_gelu(view(x, {M, K}), matrix(w, {N, K}), maybe(b, N), view(y, {M, N}));
}
template <typename W>
void mlp(Backend& be, const float* x, int64_t M, int64_t C, const W* w1, const float* b1, int64_t H, const W* w2,
         const float* b2, int64_t N, float* hidden, float* y) {
  be.mlp(view(x, {M, C}), {matrix(w1, {H, C}), maybe(b1, H), matrix(w2, {N, H}), maybe(b2, N)}, view(hidden, {M, H}),
         view(y, {M, N}));
}
inline void gemm(Backend& be, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                 int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  const View<const float> a = trans_a ? view(A, {K, M}, lda) : view(A, {M, K}, lda);
  const View<const float> b = trans_b ? view(B, {N, K}, ldb) : view(B, {K, N}, ldb);
  be.gemm(a, b, view(C, {M, N}, ldc), {trans_a, trans_b, alpha, beta});
}
inline void silu(Backend& be, const float* x, size_t n, float* y) {
  be.silu(view(x, {static_cast<int64_t>(n)}), view(y, {static_cast<int64_t>(n)}));
}
inline void gelu_tanh_inplace(Backend& be, float* x, size_t n) {
  be.gelu_tanh_inplace(view(x, {static_cast<int64_t>(n)}));
}
inline void add_inplace(Backend& be, float* y, const float* x, size_t n) {
  be.add_inplace(view(y, {static_cast<int64_t>(n)}), view(x, {static_cast<int64_t>(n)}));
}
inline void axpby_inplace(Backend& be, float* y, float a, const float* x, float b, size_t n) {
  be.axpby_inplace(view(y, {static_cast<int64_t>(n)}), a, view(x, {static_cast<int64_t>(n)}), b);
}
inline void add_scaled_rows(Backend& be, float* y, const float* x, const float* v, int64_t v_stride, int64_t rows,
                            int64_t tokens, int64_t C) {
  be.add_scaled_rows(view(y, {rows, tokens, C}), view(x, {rows, tokens, C}), view(v, {rows, C}, v_stride));
}
inline void add_broadcast_rows(Backend& be, float* y, const float* v, int64_t rows, int64_t tokens, int64_t C) {
  be.add_broadcast_rows(view(y, {rows, tokens, C}), view(v, {tokens, C}));
}
inline void softmax_rows(Backend& be, float* x, int64_t n, int64_t len) { be.softmax_rows(view(x, {n, len})); }
inline void adaln_modulate(Backend& be, const float* x, int64_t rows, int64_t tokens, int64_t C, const float* scale,
                           const float* shift, int64_t mod_stride, float eps, float* out) {
  be.adaln_modulate(view(x, {rows, tokens, C}),
                    {view(scale, {rows, C}, mod_stride), view(shift, {rows, C}, mod_stride), eps},
                    view(out, {rows, tokens, C}));
}
inline void add_scaled_rows_then_adaln(Backend& be, float* x, const float* delta, const float* gamma,
                                       int64_t gamma_stride, int64_t rows, int64_t tokens, int64_t C,
                                       const float* scale, const float* shift, int64_t mod_stride, float eps,
                                       float* out) {
  be.add_scaled_rows_then_adaln(
      view(x, {rows, tokens, C}), view(delta, {rows, tokens, C}), view(gamma, {rows, C}, gamma_stride),
      {view(scale, {rows, C}, mod_stride), view(shift, {rows, C}, mod_stride), eps}, view(out, {rows, tokens, C}));
}
template <typename Cache>
View<KvElement> cache(Cache* p, std::initializer_list<int64_t> dims) {
  return view(reinterpret_cast<KvElement*>(const_cast<std::remove_const_t<Cache>*>(p)), dims);
}
template <typename Cache>
inline void split_qkv_to_cache(Backend& be, const float* qkv, int64_t rows, int64_t tokens, int64_t H, int64_t hd,
                               bool l2norm, const float* q_scale_host, float* q, Cache* k_cache, Cache* v_cache,
                               int64_t capacity, int64_t pos) {
  be.split_qkv_to_cache(view(qkv, {rows, tokens, 3 * H * hd}), {pos, l2norm, host_view(q_scale_host, {H})},
                        view(q, {rows, H, tokens, hd}), cache(k_cache, {rows, H, capacity, hd}),
                        cache(v_cache, {rows, H, capacity, hd}));
}
template <typename Cache>
inline void attention(Backend& be, const float* q, const Cache* k_cache, const Cache* v_cache, int64_t rows, int64_t H,
                      int64_t tokens, int64_t hd, int64_t capacity, int64_t len, float scale, const KvPrefix& prefix,
                      float* out) {
  be.attention(view(q, {rows, H, tokens, hd}), cache(k_cache, {rows, H, capacity, hd}),
               cache(v_cache, {rows, H, capacity, hd}), {len, scale, prefix}, view(out, {rows, tokens, H * hd}));
}
inline void interleave_streams(Backend& be, const float* h, int64_t P, int64_t M, int64_t C, float* z) {
  be.interleave_streams(view(h, {P, M, C}), view(z, {M, C * P}));
}
inline void stream_weights(Backend& be, float* a, int64_t M, int64_t P, double smooth) {
  be.stream_weights(view(a, {M, P}), smooth);
}
inline void weighted_stream_sum(Backend& be, const float* h, const float* w, int64_t P, int64_t M, int64_t C,
                                float* out) {
  be.weighted_stream_sum(view(h, {P, M, C}), view(w, {M, P}), view(out, {M, C}));
}
inline void guidance(Backend& be, const float* logits, int64_t B, int64_t lV, const SampleJob* jobs, double ratio,
                     const std::vector<int64_t>& uncond_row, float* out) {
  int64_t R = B;
  for (int64_t b = 0; b < B; ++b) R = std::max(R, uncond_row[static_cast<size_t>(b)] + 1);
  be.guidance(view(logits, {R, lV}), view(jobs, {B}), ratio, host_view(uncond_row.data(), {B}), view(out, {B, lV}));
}
inline void sample(Backend& be, float* logits, int64_t B, int64_t l, int64_t V, const SampleJob* jobs, bool filters,
                   int scale_index, int32_t* idx) {
  be.sample(view(logits, {B, l, V}), view(jobs, {B}), {filters, scale_index}, view(idx, {B, l}));
}
template <typename W>
inline void conv2d(Backend& be, const float* x, int64_t N, int64_t Ci, int64_t H, int64_t W_, const W* w,
                   const float* b, int64_t Co, int k, int stride, int pad_t, int pad_l, int pad_b, int pad_r,
                   float* out) {
  const int64_t Ho = (H + pad_t + pad_b - k) / stride + 1, Wo = (W_ + pad_l + pad_r - k) / stride + 1;
  be.conv2d(view(x, {N, Ci, H, W_}), matrix(w, {Co, Ci, k, k}), maybe(b, Co), {stride, pad_t, pad_l, pad_b, pad_r},
            view(out, {N, Co, Ho, Wo}));
}
template <typename W>
inline void normalized_conv2d(Backend& be, const float* x, int64_t N, int64_t Ci, int64_t H, int64_t W_,
                              const NormOnRead& norm, const W* w, const float* b, int64_t Co, int k, bool add_to_out,
                              float* out) {
  be.normalized_conv2d(view(x, {N, Ci, H, W_}), norm, matrix(w, {Co, Ci, k, k}), maybe(b, Co), add_to_out,
                       view(out, {N, Co, H, W_}));
}
inline void group_norm_stats(Backend& be, const float* x, int64_t N, int64_t C, int64_t HW, int groups, float eps,
                             float* stats) {
  be.group_norm_stats(view(x, {N, C, HW}), groups, eps, view(stats, {N, groups, 2}));
}
inline void group_norm(Backend& be, const float* x, int64_t N, int64_t C, int64_t HW, int groups, const float* gamma,
                       const float* beta, float eps, bool then_silu, float* out) {
  be.group_norm(view(x, {N, C, HW}), {groups, view(gamma, {C}), view(beta, {C}), eps, then_silu},
                view(out, {N, C, HW}));
}
inline void upsample_nearest2x(Backend& be, const float* x, int64_t NC, int64_t H, int64_t W, float* out) {
  be.upsample_nearest2x(view(x, {NC, H, W}), view(out, {NC, 2 * H, 2 * W}));
}
inline void upsample_bicubic(Backend& be, const float* x, int64_t NC, int64_t h, int64_t w, int64_t H, int64_t W,
                             float* out) {
  be.upsample_bicubic(view(x, {NC, h, w}), view(out, {NC, H, W}));
}
inline void downsample_area(Backend& be, const float* x, int64_t NC, int64_t H, int64_t W, int64_t h, int64_t w,
                            float* out) {
  be.downsample_area(view(x, {NC, H, W}), view(out, {NC, h, w}));
}
inline void chw_to_tokens(Backend& be, const float* x, int64_t N, int64_t C, int64_t P, float* out) {
  be.chw_to_tokens(view(x, {N, C, P}), view(out, {N, P, C}));
}
// The table is passed as [1, C]: the op does not bound the indices.
inline void embed_chw(Backend& be, const float* table, int64_t C, const int32_t* idx, int64_t N, int64_t P,
                      float* out) {
  be.embed_chw(view(table, {1, C}), view(idx, {N, P}), view(out, {N, C, P}));
}
inline void gather_rows(Backend& be, const float* table, int64_t C, const int32_t* idx, int64_t n, float* out) {
  be.gather_rows(view(table, {1, C}), view(idx, {n}), view(out, {n, C}));
}
inline void nearest_code(Backend& be, const float* z, int64_t n, const float* codebook, int64_t V, int64_t C,
                         int32_t* idx) {
  be.nearest_code(view(z, {n, C}), view(codebook, {V, C}), view(idx, {n}));
}
inline void clamp(Backend& be, float* x, size_t n, float lo, float hi) {
  be.clamp(view(x, {static_cast<int64_t>(n)}), lo, hi);
}
inline void fill_zero(Backend& be, float* x, size_t n) { be.fill_zero(view(x, {static_cast<int64_t>(n)})); }

}  // namespace varps::extents
