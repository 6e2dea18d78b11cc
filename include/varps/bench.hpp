#pragma once
// The benchmark's measurements and the maths on them: latency statistics,
// diversity of a request's streams, the sanity checks that catch measurement
// errors, and the report files. Pure functions of the recorded data; the
// runner that drives the engine lives in bench_runner.hpp.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "varps/pipeline.hpp"

namespace varps::bench {

class GarmentFeatures;  // the built-in model's classifier (src/bench/garment_features.hpp)

// What the streams bench and the ParScale comparison share: which P, how
// many requests, and what each asks for.
struct RunSettings {
  std::vector<int> streams = {1, 2, 4, 8};
  int warmup = 1;
  int repeats = 5;
  int class_id = 0;
  uint64_t seed = 0;
  SamplingParams sampling;
  // One line per finished repeat ("batched P=4 repeat 2/5: 1234.5 ms").
  std::function<void(const std::string&)> progress;
  // With the built-in trained model: its classifier, so that diversity also
  // says how far apart the streams' garments are in its feature space. Not
  // owned; null leaves the feature distance out.
  const GarmentFeatures* garment_features = nullptr;
  // Fast modes of every timed request; with any on, the work figures (and
  // the rates from them) are left out, as they count the exact path's.
  FastModes fast;
};

// Milliseconds. Percentiles interpolate linearly between order statistics
// (numpy's default); an empty sample gives all zeros.
struct LatencyStats {
  double median = 0, p10 = 0, p90 = 0, min = 0, max = 0;
};
LatencyStats latency_stats(std::vector<double> samples_ms);
double percentile(const std::vector<double>& sorted_samples, double q);  // q in [0, 1]; input must be sorted

// The outputs of one request that diversity is computed from.
struct StreamOutputs {
  std::vector<TokenMaps> tokens;      // [stream][scale][pn·pn]
  std::vector<std::vector<float>> images;  // [stream][3·H·W], pixels in [0, 1]
};

// Mean over all pairs of streams (0 when there are fewer than two streams).
struct Diversity {
  int64_t pairs = 0;
  std::vector<double> token_disagreement_per_scale;  // fraction of positions whose tokens differ
  double token_disagreement = 0;  // over all positions of all scales
  double pixel_mad = 0;           // mean |a − b| over pixels
  double cosine_similarity = 0;   // cos(a, b) of the flattened images
  // Mean Euclidean distance of the garment classifier's 128 features
  // (scripts/quality.py's diversity); -1 without a classifier.
  double feature_distance = -1;
};
Diversity diversity(const StreamOutputs& out, const GarmentFeatures* features = nullptr);

struct PlannedMemory {
  uint64_t weights = 0;
  uint64_t kv_cache = 0;
  uint64_t activations = 0;
  uint64_t workspace = 0;  // the part of activations the backend holds for its own work
  uint64_t total() const { return weights + kv_cache + activations; }
};

// A stage's work (RequestWork) over its median time: what the hardware did
// at least, per second.
struct StageRate {
  double flops = 0, bytes = 0, ms = 0;
  double tflop_per_s() const { return ms > 0 ? flops / ms * 1e-9 : 0; }
  double gb_per_s() const { return ms > 0 ? bytes / ms * 1e-6 : 0; }
};
// "transformer" and "decode", from the work and the median stage times.
std::map<std::string, StageRate> stage_rates(const RequestWork& work, const std::map<std::string, double>& stages_ms);

// The hardware's peaks, when the user gives them: rates are then also shown
// as fractions of them. 0: unknown.
struct HardwarePeaks {
  double tflop_per_s = 0;
  double gb_per_s = 0;
};

struct Flag {
  std::string name;    // e.g. "speedup_above_streams"
  std::string reason;  // one sentence with the numbers that triggered it
};

struct RunResult {
  std::string schedule;  // "batched" or "sequential"
  int streams = 0;
  std::vector<double> latency_samples_ms;  // one per repeat, tokens to pixels
  LatencyStats latency_ms;
  double images_per_s = 0;    // streams / median latency
  double ms_per_stream = 0;   // median latency / streams
  uint64_t peak_memory_bytes = 0;  // measured
  // The peak of the backend's arrays (weights, KV cache, activations; on a
  // device also its workspaces): what the plan counts, on the CPU too, where
  // peak_memory_bytes is the process RSS.
  uint64_t arrays_peak_bytes = 0;
  PlannedMemory planned;           // the engine's plan
  uint64_t kv_bytes_per_stream = 0;  // theoretical KV-cache growth per added stream
  std::vector<int64_t> backbone_passes_per_scale;  // from the engine's counters
  std::vector<int64_t> rows_per_pass;              // per scale, rows of each pass
  std::map<std::string, double> stages_ms;         // median per stage
  RequestWork work;                                // counted from the shapes
  Diversity diversity;
  Diversity control_diversity;  // all streams share one seed: must be exactly 0
  StreamOutputs outputs;          // of the last repeat, kept for re-checking
  StreamOutputs control_outputs;
  std::vector<Flag> flags;
};

struct SanityThresholds {
  // Latency differences below this fraction of the median (or the runs'
  // own p10–p90 spread, if larger) count as noise.
  double noise_fraction = 0.05;
  // A run whose (p90 − p10) / median exceeds this is too noisy to trust.
  double max_relative_spread = 0.25;
  // Measured memory must grow by at least this fraction of the planned growth.
  double min_memory_growth_fraction = 0.25;
};

// Checks every run against the others (same schedule, other P; same P,
// other schedule) and against its own recorded outputs; appends flags.
void apply_sanity_checks(std::vector<RunResult>& runs, const SanityThresholds& t = {});

struct Report {
  std::map<std::string, std::string> machine;  // backend, dtype, threads, cpu, commit, ...
  std::map<std::string, std::string> model;    // config and sampling parameters
  SanityThresholds thresholds;
  HardwarePeaks peaks;
  std::vector<RunResult> runs;
};

std::string report_json(const Report& r);      // bench.json
std::string report_csv(const Report& r);       // bench.csv, one line per run
std::string report_markdown(const Report& r);  // bench.md (also printed)
std::string report_svg(const Report& r);       // latency and peak memory against P, both schedules
// Writes bench.json, bench.csv, bench.md and bench.svg into dir (created).
void write_report(const std::filesystem::path& dir, const Report& r);

}  // namespace varps::bench
