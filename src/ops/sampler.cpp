#include "ops/sampler.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "backend.hpp"

namespace varps {

bool sample_filters(const SampleJob* jobs, int64_t n, int64_t V) {
  for (int64_t b = 0; b < n; ++b) {
    const SamplingParams& p = jobs[b].params;
    if ((p.top_k > 0 && p.top_k < V) || p.top_p > 0.0) return true;
  }
  return false;
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
