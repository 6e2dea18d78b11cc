#pragma once
// The checks of one measurement that need no other run, shared by the
// streams benchmark (sanity.cpp) and the ParScale comparison (private to
// src/bench).
#include <cstdint>
#include <string>
#include <vector>

#include "varps/bench.hpp"

namespace varps::bench {

// (p90 − p10) / median; 0 for an empty or zero-median run.
double relative_spread(const LatencyStats& s);
// "%.6g", for the numbers in flag reasons.
std::string reason_number(double v);

struct MeasurementRecord {
  const std::vector<double>& samples_ms;
  const LatencyStats& latency_ms;
  const std::vector<int64_t>& passes_per_scale;
  size_t scales = 0;  // scales the outputs have; 0 when not recorded
};

// Appends, in this order: latency_not_from_samples (the reported figures are
// not what the samples give), `pass_flag` (a scale with other than
// `expected_passes` backbone passes; `why` says what that count means),
// spread_too_wide, too_few_repeats.
void check_measurement(const MeasurementRecord& m, int64_t expected_passes, const std::string& pass_flag,
                       const std::string& why, const SanityThresholds& t, std::vector<Flag>& flags);

}  // namespace varps::bench
