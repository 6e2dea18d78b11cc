#pragma once
// One measured request (private to src/bench): warm-up, then timed repeats
// of the same request, with the process's memory peak over all of them.
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "varps/pipeline.hpp"

namespace varps::bench {

struct Measurement {
  std::vector<double> samples_ms;    // one per repeat, the whole request
  std::vector<StageTimings> stages;  // per repeat
  GeneratedImages last;              // outputs of the last repeat
  uint64_t peak_memory_bytes = 0;
  uint64_t arrays_peak_bytes = 0;  // the backend's arrays, on every backend
};

// Releases the backend's cached memory and resets the peak before the
// warm-up, so the peak is this request's own: the device's for a device
// backend, the process's peak RSS for the CPU (see memory_measure()). `on_repeat(i, ms)` after each
// timed repeat.
Measurement measure(const Pipeline& pipe, const std::vector<ImageRequest>& req, const GenerateOptions& opts,
                    int warmup, int repeats, const std::function<void(int, double)>& on_repeat);

// How the latency samples were timed on this pipeline, for the reports.
std::string latency_measure(const Pipeline& pipe);

// How peak_memory_bytes was measured on this pipeline, for the reports.
std::string memory_measure(const Pipeline& pipe);

// Rows of each backbone pass, per scale (0 where a scale ran no pass).
std::vector<int64_t> rows_per_pass(const EngineCounters& c);

// Median per stage over the repeats ("transformer", "transformer_s3",
// "sampling", "residual", "decode", "setup").
std::map<std::string, double> stage_medians(const std::vector<StageTimings>& runs);

}  // namespace varps::bench
