// Transformer ops of the CPU backend: AdaLN, the attention with its KV cache,
// guidance and sampling.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "cpu/bf16_panels.hpp"
#include "cpu/cpu_backend.hpp"
#include "cpu/gemm_kernel.hpp"
#include "cpu/group_stats.hpp"
#include "cpu/panel_gemm.hpp"
#include "cpu/vector_math.hpp"
#include "ops/sampler.hpp"
#include "varps/error.hpp"

namespace varps {

void CpuBackend::do_adaln_modulate(const float* x, int64_t rows, int64_t tokens, int64_t C, const float* scale,
                                const float* shift, int64_t mod_stride, float eps, float* out) {
#pragma omp parallel for collapse(2) schedule(static) if (rows * tokens > 16)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < tokens; ++i) {
      const float* xx = x + (r * tokens + i) * C;
      float* yy = out + (r * tokens + i) * C;
      const float* sc = scale + r * mod_stride;
      const float* sh = shift + r * mod_stride;
      // LayerNorm's statistics are GroupNorm's of a single group: two
      // passes in double, in vector lanes.
      const cpu::GroupStats st = cpu::group_stats(xx, C, eps);
      const float m = st.mean, rstd = st.rstd;
      for (int64_t c = 0; c < C; ++c) yy[c] = ((xx[c] - m) * rstd) * (1.0f + sc[c]) + sh[c];
    }
}

void CpuBackend::do_split_qkv_to_cache(const float* qkv, int64_t rows, int64_t tokens, int64_t H, int64_t hd,
                                    bool l2norm, const float* q_scale_host, float* q, float* k_cache,
                                    float* v_cache, int64_t capacity, int64_t pos) {
  const int64_t C = H * hd;
#pragma omp parallel for collapse(3) schedule(static) if (rows * tokens * H > 64)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < tokens; ++i)
      for (int64_t h = 0; h < H; ++h) {
        const float* src = qkv + (r * tokens + i) * 3 * C + h * hd;
        float* qd = q + ((r * H + h) * tokens + i) * hd;
        float* kd = k_cache + ((r * H + h) * capacity + pos + i) * hd;
        float* vd = v_cache + ((r * H + h) * capacity + pos + i) * hd;
        const float* qs = src;
        const float* ks = src + C;
        const float* vs = src + 2 * C;
        if (l2norm) {
          // F.normalize: x / max(‖x‖, 1e-12)
          float nq = 0.0f, nk = 0.0f;
          for (int64_t d = 0; d < hd; ++d) {
            nq += qs[d] * qs[d];
            nk += ks[d] * ks[d];
          }
          const float dq = std::max(std::sqrt(nq), 1e-12f);
          const float dk = std::max(std::sqrt(nk), 1e-12f);
          const float mul = q_scale_host[h];
          for (int64_t d = 0; d < hd; ++d) {
            qd[d] = (qs[d] / dq) * mul;
            kd[d] = ks[d] / dk;
          }
        } else {
          std::memcpy(qd, qs, hd * sizeof(float));
          std::memcpy(kd, ks, hd * sizeof(float));
        }
        std::memcpy(vd, vs, hd * sizeof(float));
      }
}

namespace {

// Token t of one head: the stream's prefix, then the row's cache; null
// past the last.
const float* token_row(const float* prefix, int64_t T, const float* cache, int64_t len, int64_t hd, int64_t t) {
  return t < T ? prefix + t * hd : t < T + len ? cache + (t - T) * hd : nullptr;
}

// Rows of one head (keys or values, [tokens, hd] each), the stream's prefix
// then the row's cache, as the B panels of a product over their hd columns
// (lane = token): the keys of scores = q·Kᵀ.
void pack_tokens_as_columns(const float* prefix, int64_t T, const float* cache, int64_t len, int64_t hd,
                            float* panels) {
  const int64_t n = T + len;
  for (int64_t j = 0; j < (n + cpu::kTileCols - 1) / cpu::kTileCols; ++j)
    for (int c = 0; c < cpu::kTileCols; ++c) {
      const float* src = token_row(prefix, T, cache, len, hd, j * cpu::kTileCols + c);
      float* dst = panels + j * hd * cpu::kTileCols + c;
      for (int64_t d = 0; d < hd; ++d) dst[d * cpu::kTileCols] = src ? src[d] : 0.0f;
    }
}

// The same rows as the B panels of a product over the tokens (lane = one
// of hd columns): the values of out = P·V, when hd is not a whole number of
// panels and V cannot be read as it is.
void pack_tokens_as_rows(const float* prefix, int64_t T, const float* cache, int64_t len, int64_t hd,
                         float* panels) {
  const int64_t n = T + len;
  for (int64_t j = 0; j < (hd + cpu::kTileCols - 1) / cpu::kTileCols; ++j)
    for (int64_t t = 0; t < n; ++t) {
      const float* src = token_row(prefix, T, cache, len, hd, t);
      float* dst = panels + (j * n + t) * cpu::kTileCols;
      for (int c = 0; c < cpu::kTileCols; ++c) {
        const int64_t d = j * cpu::kTileCols + c;
        dst[c] = d < hd ? src[d] : 0.0f;
      }
    }
}

// The keys as bf16 B panels of scores = q·Kᵀ (lane = token, a word = two
// consecutive of the hd columns; cpu/bf16_panels.hpp).
void pack_keys_bf16(const float* prefix, int64_t T, const float* cache, int64_t len, int64_t hd, uint32_t* panels,
                    std::vector<uint32_t>& words) {
  const int64_t n = T + len, k2 = (hd + 1) / 2;
  words.resize(static_cast<size_t>(k2));
  for (int64_t j = 0; j < (n + cpu::kTileCols - 1) / cpu::kTileCols; ++j)
    for (int c = 0; c < cpu::kTileCols; ++c) {
      const float* src = token_row(prefix, T, cache, len, hd, j * cpu::kTileCols + c);
      if (src)
        cpu::round_to_bf16_pairs(src, hd, words.data());
      else
        std::fill(words.begin(), words.end(), 0u);
      uint32_t* dst = panels + j * k2 * cpu::kTileCols + c;
      for (int64_t k = 0; k < k2; ++k) dst[k * cpu::kTileCols] = words[k];
    }
}

// The values as bf16 B panels of out = P·V (lane = one of the hd columns, a
// word = that column of two consecutive tokens).
void pack_values_bf16(const float* prefix, int64_t T, const float* cache, int64_t len, int64_t hd,
                      uint32_t* panels) {
  const int64_t k2 = (T + len + 1) / 2;
  for (int64_t j = 0; j < (hd + cpu::kTileCols - 1) / cpu::kTileCols; ++j)
    for (int64_t k = 0; k < k2; ++k) {
      const float* even = token_row(prefix, T, cache, len, hd, 2 * k);
      const float* odd = token_row(prefix, T, cache, len, hd, 2 * k + 1);
      uint32_t* dst = panels + (j * k2 + k) * cpu::kTileCols;
      const int64_t d0 = j * cpu::kTileCols, d1 = std::min(hd, d0 + cpu::kTileCols);
      cpu::round_to_bf16_rows(even + d0, odd ? odd + d0 : nullptr, d1 - d0, dst);
      std::fill(dst + (d1 - d0), dst + cpu::kTileCols, 0u);
    }
}

}  // namespace

void CpuBackend::do_attention(const float* q, const float* k_cache, const float* v_cache, int64_t rows, int64_t H,
                           int64_t tokens, int64_t hd, int64_t capacity, int64_t len, float scale,
                           const KvPrefix& prefix, float* out) {
  const int64_t C = H * hd, T = prefix.tokens, width = T + len;
  if (products_ != cpu::PackedMatrix::Element::F32) {
    attention_bf16(q, k_cache, v_cache, rows, H, tokens, hd, capacity, len, scale, prefix, out);
    return;
  }
  // V serves as the B of P·V as it is when its rows are whole panels.
  const bool values_as_stored = hd % cpu::kTileCols == 0;
  const size_t key_floats = cpu::b_panel_floats(width, hd);
  const size_t value_floats = values_as_stored ? 0 : cpu::b_panel_floats(hd, width);
  const size_t score_floats = static_cast<size_t>(tokens * width);
  // One (row, head) pair per task, each thread with its own scores and
  // packed keys; the products run single-threaded inside. Scores are
  // [tokens, T + len]: the stream's prefix columns, then the row's own.
#pragma omp parallel
  {
    const cpu::ScratchPool::Lease lease = scratch_->take(key_floats + value_floats + score_floats);
    float* const keys = lease.data();
    float* const values = keys + key_floats;
    float* const scores = values + value_floats;
#pragma omp for collapse(2) schedule(dynamic)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t h = 0; h < H; ++h) {
        const float* qq = q + (r * H + h) * tokens * hd;
        const float* kk = k_cache + (r * H + h) * capacity * hd;
        const float* vv = v_cache + (r * H + h) * capacity * hd;
        const int64_t stream = T > 0 ? r / prefix.rows_per_stream : 0;
        const float* pk = T > 0 ? prefix.k + (stream * H + h) * T * hd : nullptr;
        const float* pv = T > 0 ? prefix.v + (stream * H + h) * T * hd : nullptr;
        pack_tokens_as_columns(pk, T, kk, len, hd, keys);
        cpu::multiply_panels(cpu::AOperand{qq, hd, false}, cpu::BOperand::panels(keys, hd), tokens, width, hd,
                             cpu::ProductOutput{scores, width, false, nullptr, false}, isa_);
        for (int64_t i = 0; i < tokens; ++i) cpu::softmax_span(scores + i * width, static_cast<size_t>(width), scale);
        const cpu::ProductOutput o{out + r * tokens * C + h * hd, C, false, nullptr, false};
        if (!values_as_stored) {
          pack_tokens_as_rows(pv, T, vv, len, hd, values);
          cpu::multiply_panels(cpu::AOperand{scores, width, false}, cpu::BOperand::panels(values, width), tokens, hd,
                               width, o, isa_);
          continue;
        }
        // The prefix's columns, then the row's own added to them: one sum
        // over the T + len keys in order, as in the packed case.
        if (T > 0)
          cpu::multiply_panels(cpu::AOperand{scores, width, false}, cpu::BOperand::rows(pv, hd), tokens, hd, T, o, isa_);
        cpu::ProductOutput own = o;
        own.accumulate = T > 0;
        cpu::multiply_panels(cpu::AOperand{scores + T, width, false}, cpu::BOperand::rows(vv, hd), tokens, hd, len,
                             own, isa_);
      }
  }
}

void CpuBackend::attention_bf16(const float* q, const float* k_cache, const float* v_cache, int64_t rows, int64_t H,
                                int64_t tokens, int64_t hd, int64_t capacity, int64_t len, float scale,
                                const KvPrefix& prefix, float* out) {
  const int64_t C = H * hd, T = prefix.tokens, width = T + len;
  const size_t key_words = cpu::bf16_b_panel_words(width, hd), value_words = cpu::bf16_b_panel_words(hd, width);
  const size_t score_floats = static_cast<size_t>(tokens * width);
#pragma omp parallel
  {
    const cpu::ScratchPool::Lease lease = scratch_->take(key_words + value_words + score_floats);
    uint32_t* const keys = reinterpret_cast<uint32_t*>(lease.data());
    uint32_t* const values = keys + key_words;
    float* const scores = lease.data() + key_words + value_words;
    std::vector<uint32_t> token_words;
#pragma omp for collapse(2) schedule(dynamic)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t h = 0; h < H; ++h) {
        const int64_t stream = T > 0 ? r / prefix.rows_per_stream : 0;
        const float* pk = T > 0 ? prefix.k + (stream * H + h) * T * hd : nullptr;
        const float* pv = T > 0 ? prefix.v + (stream * H + h) * T * hd : nullptr;
        pack_keys_bf16(pk, T, k_cache + (r * H + h) * capacity * hd, len, hd, keys, token_words);
        pack_values_bf16(pv, T, v_cache + (r * H + h) * capacity * hd, len, hd, values);
        cpu::multiply_bf16_panels(q + (r * H + h) * tokens * hd, hd, keys, tokens, width, hd,
                                  cpu::ProductOutput{scores, width, false, nullptr, false}, isa_, scratch_.get());
        for (int64_t i = 0; i < tokens; ++i) cpu::softmax_span(scores + i * width, static_cast<size_t>(width), scale);
        cpu::multiply_bf16_panels(scores, width, values, tokens, hd, width,
                                  cpu::ProductOutput{out + r * tokens * C + h * hd, C, false, nullptr, false}, isa_,
                                  scratch_.get());
      }
  }
}

void CpuBackend::do_interleave_streams(const float* h, int64_t P, int64_t M, int64_t C, float* z) {
#pragma omp parallel for schedule(static) if (M * C * P > 65536)
  for (int64_t m = 0; m < M; ++m)
    for (int64_t p = 0; p < P; ++p) {
      const float* src = h + (p * M + m) * C;
      float* dst = z + m * C * P + p;
      for (int64_t c = 0; c < C; ++c) dst[c * P] = src[c];
    }
}

void CpuBackend::do_stream_weights(float* a, int64_t M, int64_t P, double smooth) {
  do_softmax_rows(a, M, P);
  const float keep = static_cast<float>(1.0 - smooth);
  const float floor = static_cast<float>(smooth / static_cast<double>(P));
  for (int64_t i = 0; i < M * P; ++i) a[i] = a[i] * keep + floor;
}

void CpuBackend::do_weighted_stream_sum(const float* h, const float* w, int64_t P, int64_t M, int64_t C, float* out) {
#pragma omp parallel for schedule(static) if (M * C * P > 65536)
  for (int64_t m = 0; m < M; ++m) {
    float* o = out + m * C;
    const float w0 = w[m * P];
    const float* h0 = h + m * C;
    for (int64_t c = 0; c < C; ++c) o[c] = w0 * h0[c];
    for (int64_t p = 1; p < P; ++p) {
      const float wp = w[m * P + p];
      const float* hp = h + (p * M + m) * C;
      for (int64_t c = 0; c < C; ++c) o[c] += wp * hp[c];
    }
  }
}

void CpuBackend::do_guidance(const float* logits, int64_t B, int64_t lV, const SampleJob* jobs, double ratio,
                          const int64_t* uncond_row, float* out) {
  for (int64_t b = 0; b < B; ++b) {
    if (uncond_row[b] < 0) {
      std::memcpy(out + b * lV, logits + b * lV, static_cast<size_t>(lV) * sizeof(float));
      continue;
    }
    // The reference multiplies float32 tensors by Python floats: each scalar
    // is rounded to float32, then two products and a difference in float32.
    const double t = jobs[b].params.cfg * ratio;
    const float a = static_cast<float>(1.0 + t);
    const float tt = static_cast<float>(t);
    const float* c = logits + b * lV;
    const float* u = logits + uncond_row[b] * lV;
    float* o = out + b * lV;
    for (int64_t i = 0; i < lV; ++i) {
      const float pc = a * c[i];
      const float pu = tt * u[i];
      o[i] = pc - pu;
    }
  }
}

void CpuBackend::do_sample(float* logits, int64_t B, int64_t l, int64_t V, const SampleJob* jobs, bool filters,
                        int scale_index, int32_t* idx) {
  if (!filters && sample_filters(jobs, B, V))
    throw Error("sample: told that no image keeps a top-k or top-p filter, but one does");
#pragma omp parallel for collapse(2) schedule(dynamic, 4)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < l; ++i) {
      const SampleJob& job = jobs[b];
      idx[b * l + i] = sample_token(logits + (b * l + i) * V, V, job.params.top_k, job.params.top_p,
                                    job.params.temperature,
                                    token_uniform(job.seed, scale_index, i));
    }
}

}  // namespace varps
