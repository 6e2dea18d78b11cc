#include "model/token_pruning.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "ops/resample.hpp"
#include "varps/error.hpp"

namespace varps {

int64_t kept_tokens(int64_t l, double prune) {
  const int64_t dropped = static_cast<int64_t>(std::floor(static_cast<double>(l) * prune));
  return std::max<int64_t>(1, l - dropped);
}

std::vector<int64_t> pivotal_tokens(const float* x, int64_t l, int64_t C, int64_t keep) {
  VARPS_CHECK(keep >= 1 && keep <= l, "a row keeps 1 to all of its tokens");
  std::vector<double> mean(static_cast<size_t>(C), 0.0);
  for (int64_t t = 0; t < l; ++t)
    for (int64_t c = 0; c < C; ++c) mean[c] += x[t * C + c];
  for (double& m : mean) m /= static_cast<double>(l);
  std::vector<double> score(static_cast<size_t>(l), 0.0);
  for (int64_t t = 0; t < l; ++t)
    for (int64_t c = 0; c < C; ++c) {
      const double d = x[t * C + c] - mean[c];
      score[t] += d * d;
    }
  std::vector<int64_t> order(static_cast<size_t>(l));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return score[a] > score[b]; });
  order.resize(static_cast<size_t>(keep));
  std::sort(order.begin(), order.end());
  return order;
}

PrunedScale::PrunedScale(float* x, int64_t rows, int64_t l, int64_t C, int64_t keep)
    : rows_(rows), l_(l), C_(C), keep_(keep) {
  for (int64_t r = 0; r < rows; ++r) {
    const std::vector<int64_t> row = pivotal_tokens(x + r * l * C, l, C, keep);
    kept_.insert(kept_.end(), row.begin(), row.end());
  }
  // Destinations never pass their sources (r·keep + k ≤ r·l + kept[k]), so
  // an ascending copy compacts in place.
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < keep; ++k)
      std::memmove(x + (r * keep + k) * C, x + (r * l + kept_[r * keep + k]) * C, static_cast<size_t>(C) * sizeof(float));
}

void PrunedScale::restore(const float* h, const float* prev, int64_t prev_side, int64_t side, float* full) const {
  VARPS_CHECK(side * side == l_, "the scale's side squared is its tokens");
  const int64_t C = C_, pl = prev_side * prev_side;
  for (int64_t r = 0; r < rows_; ++r) {
    const float* src = prev + r * pl * C;
    float* dst = full + r * l_ * C;
    for (int64_t oy = 0; oy < side; ++oy) {
      const int64_t y0 = ops::area_start(oy, side, prev_side), y1 = ops::area_end(oy, side, prev_side);
      for (int64_t ox = 0; ox < side; ++ox) {
        const int64_t x0 = ops::area_start(ox, side, prev_side), x1 = ops::area_end(ox, side, prev_side);
        float* out = dst + (oy * side + ox) * C;
        std::fill(out, out + C, 0.0f);
        for (int64_t y = y0; y < y1; ++y)
          for (int64_t x = x0; x < x1; ++x)
            for (int64_t c = 0; c < C; ++c) out[c] += src[(y * prev_side + x) * C + c];
        const float n = static_cast<float>((y1 - y0) * (x1 - x0));
        for (int64_t c = 0; c < C; ++c) out[c] /= n;
      }
    }
    for (int64_t k = 0; k < keep_; ++k)
      std::memcpy(dst + kept_[r * keep_ + k] * C, h + (r * keep_ + k) * C, static_cast<size_t>(C) * sizeof(float));
  }
}

}  // namespace varps
