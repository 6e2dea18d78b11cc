// Latency statistics: percentiles with numpy's default linear interpolation.
#include <algorithm>
#include <cmath>
#include <string>

#include "varps/bench.hpp"
#include "varps/error.hpp"

namespace varps::bench {

double percentile(const std::vector<double>& sorted_samples, double q) {
  if (!(q >= 0.0 && q <= 1.0)) throw Error("percentile: q must lie in [0, 1], got " + std::to_string(q));
  VARPS_CHECK(std::is_sorted(sorted_samples.begin(), sorted_samples.end()), "percentile needs sorted samples");
  const size_t n = sorted_samples.size();
  if (n == 0) return 0.0;
  // numpy "linear": position (n − 1)·q between order statistics.
  const double pos = static_cast<double>(n - 1) * q;
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, n - 1);
  const double frac = pos - static_cast<double>(lo);
  const double a = sorted_samples[lo], b = sorted_samples[hi];
  return frac == 0.0 ? a : a + (b - a) * frac;
}

LatencyStats latency_stats(std::vector<double> samples_ms) {
  LatencyStats s;
  if (samples_ms.empty()) return s;
  for (size_t i = 0; i < samples_ms.size(); ++i) {
    if (!std::isfinite(samples_ms[i])) {
      throw Error("latency sample " + std::to_string(i) + " is not finite");
    }
  }
  std::sort(samples_ms.begin(), samples_ms.end());
  s.min = samples_ms.front();
  s.max = samples_ms.back();
  s.median = percentile(samples_ms, 0.5);
  s.p10 = percentile(samples_ms, 0.1);
  s.p90 = percentile(samples_ms, 0.9);
  return s;
}

}  // namespace varps::bench
