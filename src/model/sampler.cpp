#include "model/sampler.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

namespace varps {

std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> c, std::array<uint32_t, 2> k) {
  constexpr uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(M0) * c[0];
    const uint64_t p1 = static_cast<uint64_t>(M1) * c[2];
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    c = {hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0};
    k[0] += W0;
    k[1] += W1;
  }
  return c;
}

double token_uniform(uint64_t seed, int scale_index, int64_t token_index) {
  const auto r = philox4x32_10({static_cast<uint32_t>(token_index), static_cast<uint32_t>(scale_index), 0u, 0u},
                               {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)});
  const uint64_t bits = ((static_cast<uint64_t>(r[0]) << 32) | r[1]) >> 11;
  return static_cast<double>(bits) * 0x1.0p-53;
}

int32_t sample_token(float* logits, int64_t V, int top_k, double top_p, double temperature, double u) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  if (temperature != 1.0) {
    const float inv = static_cast<float>(1.0 / temperature);
    for (int64_t i = 0; i < V; ++i) logits[i] *= inv;
  }
  if (top_k > 0 && top_k < V) {
    // Keep every logit >= the k-th largest (ties with it are kept).
    std::vector<float> tmp(logits, logits + V);
    std::nth_element(tmp.begin(), tmp.begin() + (top_k - 1), tmp.end(), std::greater<float>());
    const float kth = tmp[top_k - 1];
    for (int64_t i = 0; i < V; ++i)
      if (logits[i] < kth) logits[i] = kNegInf;
  }
  if (top_p > 0.0) {
    // Official: sort ascending, softmax, cumulative sum, drop entries whose
    // cumulative sum <= 1 - p, never the largest. Entries already at -inf
    // have probability 0, so only the finite ones need sorting.
    std::vector<int32_t> order;
    order.reserve(static_cast<size_t>(V));
    for (int64_t i = 0; i < V; ++i)
      if (logits[i] != kNegInf) order.push_back(static_cast<int32_t>(i));
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return logits[a] < logits[b]; });
    if (!order.empty()) {
      const float mx = logits[order.back()];
      float sum = 0.0f;
      std::vector<float> e(order.size());
      for (size_t j = 0; j < order.size(); ++j) {
        e[j] = std::exp(logits[order[j]] - mx);
        sum += e[j];
      }
      const float limit = static_cast<float>(1.0 - top_p);
      float cum = 0.0f;
      for (size_t j = 0; j + 1 < order.size(); ++j) {
        cum += e[j] / sum;
        if (cum <= limit) logits[order[j]] = kNegInf;
      }
    }
  }
  float mx = kNegInf;
  int32_t arg = 0;
  for (int64_t i = 0; i < V; ++i)
    if (logits[i] > mx) {
      mx = logits[i];
      arg = static_cast<int32_t>(i);
    }
  if (mx == kNegInf || std::isnan(mx)) return arg;
  double total = 0.0;
  std::vector<double> p(static_cast<size_t>(V));
  for (int64_t i = 0; i < V; ++i) {
    p[i] = logits[i] == kNegInf ? 0.0 : std::exp(static_cast<double>(logits[i]) - mx);
    total += p[i];
  }
  const double target = u * total;
  double cum = 0.0;
  int32_t last = arg;
  for (int64_t i = 0; i < V; ++i) {
    if (p[i] == 0.0) continue;
    cum += p[i];
    last = static_cast<int32_t>(i);
    if (cum > target) return last;
  }
  return last;
}

}  // namespace varps
