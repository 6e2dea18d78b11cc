#pragma once
// ParScale against parameter scaling, measured: one model with P aggregated
// streams (P = 1, 2, 4, 8, untrained adapters: the cost does not depend on
// the values) side by side with larger models, each request timed after
// warm-up over several repeats, with its own memory peak and its increase
// over the base model. The table ParScale's paper models for language
// models, measured here for VAR.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "varps/bench.hpp"
#include "varps/pipeline.hpp"

namespace varps::bench {

// streams: the ParScale P of the adapters on the base model.
struct CompareConfig : RunSettings {
  int prefix_tokens = 48;  // T of every adapter
  uint64_t adapter_seed = 0;
  std::vector<std::string> larger;  // presets measured after the base model
  int images = 1;                   // images per request (distinct seeds)
  bool unconditional = false;       // each model's own unconditional class instead of class_id
};

struct CompareEntry {
  std::string label;      // "d16", "d16 + ParScale P=4", "d20"
  std::string model;      // VarConfig::describe()
  int parscale_streams = 0;  // 0: no adapter
  int prefix_tokens = 0;
  uint64_t parameters = 0;   // VAR + VQVAE + adapter (Pipeline::parameters)
  std::vector<double> latency_samples_ms;
  LatencyStats latency_ms;
  uint64_t peak_memory_bytes = 0;
  PlannedMemory planned;
  std::vector<int64_t> backbone_passes_per_scale;
  std::vector<int64_t> rows_per_pass;
  std::map<std::string, double> stages_ms;
  // Relative to the base model's row (the first): (x − base) / base.
  double latency_increase = 0, memory_increase = 0, parameter_increase = 0;
  std::vector<Flag> flags;
};

struct CompareReport {
  std::map<std::string, std::string> machine, model;
  SanityThresholds thresholds;
  std::vector<CompareEntry> entries;  // base model first
};

// The base model (`load_base`) runs without an adapter, then with an
// untrained adapter for each P; then each larger model (`load_larger(name)`).
// One model is resident at a time, so each row's peak memory is its own.
CompareReport run_parscale_comparison(const std::function<Pipeline()>& load_base, const std::string& base_label,
                                      const CompareConfig& cfg,
                                      const std::function<Pipeline(const std::string&)>& load_larger,
                                      std::map<std::string, std::string> machine,
                                      std::map<std::string, std::string> model);

// Flags: passes_per_scale_not_one, spread_too_wide, too_few_repeats,
// latency_not_from_samples, latency_below_base (a row doing more work than
// the base, P >= 2 or a larger model, measured faster beyond noise),
// memory_not_above_base (a larger model whose peak is not above the base's).
void apply_comparison_checks(std::vector<CompareEntry>& entries, const SanityThresholds& t = {});

std::string comparison_json(const CompareReport& r);
std::string comparison_csv(const CompareReport& r);
std::string comparison_markdown(const CompareReport& r);
// Writes compare.json, compare.csv and compare.md into dir (created).
void write_comparison(const std::filesystem::path& dir, const CompareReport& r);

}  // namespace varps::bench
