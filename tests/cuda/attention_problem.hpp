#pragma once
// An attention problem for the attention kernels' tests: random queries, KV
// caches and ParScale prefix, and the CPU backend's output over the values
// the kernel's products see: the cache rounded to CacheT and, for a kernel
// that rounds them too, the queries and the prefix.
#include <cmath>
#include <cstdint>
#include <vector>

#include "backend.hpp"
#include "backend_extents.hpp"
#include "cuda/normalised_error.hpp"
#include "cuda/rounded_operands.hpp"

namespace varps::testing {

struct AttentionCase {
  const char* what;
  int64_t rows, H, tokens, hd, capacity, len;
  int64_t prefix_tokens = 0, rows_per_stream = 1;
};

template <typename CacheT>
struct AttentionProblem {
  std::vector<float> q, pk, pv;  // as the kernel reads them
  std::vector<CacheT> k, v;      // the caches as stored
  std::vector<float> ref;        // the CPU backend's output
  float scale = 0.0f;

  const float* prefix_k() const { return pk.empty() ? nullptr : pk.data(); }
  const float* prefix_v() const { return pv.empty() ? nullptr : pv.data(); }
};

template <typename CacheT>
AttentionProblem<CacheT> attention_problem(const AttentionCase& c, bool queries_and_prefix_rounded) {
  const int64_t streams = c.rows / c.rows_per_stream;
  AttentionProblem<CacheT> p;
  p.scale = 1.0f / std::sqrt(static_cast<float>(c.hd));
  // Queries of about 2.5 times the keys' size give peaked softmax weights.
  p.q = random_vector(c.rows * c.H * c.tokens * c.hd, 21, 2.5f);
  p.pk = random_vector(streams * c.H * c.prefix_tokens * c.hd, 24);
  p.pv = random_vector(streams * c.H * c.prefix_tokens * c.hd, 25);
  const std::vector<float> k = random_vector(c.rows * c.H * c.capacity * c.hd, 22),
                           v = random_vector(c.rows * c.H * c.capacity * c.hd, 23);
  p.k = to_precision<CacheT>(k);
  p.v = to_precision<CacheT>(v);

  const auto q_seen = queries_and_prefix_rounded ? rounded<CacheT>(p.q) : p.q;
  const auto pk_seen = queries_and_prefix_rounded ? rounded<CacheT>(p.pk) : p.pk;
  const auto pv_seen = queries_and_prefix_rounded ? rounded<CacheT>(p.pv) : p.pv;
  const auto k_seen = rounded<CacheT>(k), v_seen = rounded<CacheT>(v);
  p.ref.resize(c.rows * c.tokens * c.H * c.hd);
  extents::attention(
      *make_cpu_backend(1), q_seen.data(), k_seen.data(), v_seen.data(), c.rows, c.H, c.tokens, c.hd, c.capacity, c.len, p.scale,
      KvPrefix{pk_seen.data(), pv_seen.data(), c.prefix_tokens, c.rows_per_stream}, p.ref.data());
  return p;
}

}  // namespace varps::testing
