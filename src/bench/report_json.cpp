// bench.json: every run's figures (not the raw outputs), the machine, the
// model and the sanity thresholds; and the JSON pieces compare.json shares.
#include <nlohmann/json.hpp>

#include "bench/json_fields.hpp"
#include "varps/bench.hpp"

namespace varps::bench {
namespace {

using json = nlohmann::ordered_json;

json to_json(const Diversity& d) {
  json j;
  j["pairs"] = d.pairs;
  j["token_disagreement"] = d.token_disagreement;
  j["token_disagreement_per_scale"] = d.token_disagreement_per_scale;
  j["pixel_mad"] = d.pixel_mad;
  j["cosine_similarity"] = d.cosine_similarity;
  if (d.feature_distance >= 0) j["feature_distance"] = d.feature_distance;
  return j;
}

json to_json(const RunResult& r, const HardwarePeaks& peaks) {
  json j;
  j["schedule"] = r.schedule;
  j["streams"] = r.streams;
  j["latency_ms"] = latency_json(r.latency_ms);
  j["latency_samples_ms"] = r.latency_samples_ms;
  j["images_per_s"] = r.images_per_s;
  j["ms_per_stream"] = r.ms_per_stream;
  j["peak_memory_bytes"] = r.peak_memory_bytes;
  j["arrays_peak_bytes"] = r.arrays_peak_bytes;
  j["planned_memory_bytes"] = planned_json(r.planned);
  j["kv_bytes_per_stream"] = r.kv_bytes_per_stream;
  j["backbone_passes_per_scale"] = r.backbone_passes_per_scale;
  j["rows_per_pass"] = r.rows_per_pass;
  j["diversity"] = to_json(r.diversity);
  j["control_diversity"] = to_json(r.control_diversity);
  j["stages_ms"] = json::object();
  for (const auto& [stage, v] : r.stages_ms) j["stages_ms"][stage] = v;
  j["work"] = json::object();
  for (const auto& [stage, rate] : stage_rates(r.work, r.stages_ms)) {
    json s = {{"flops", rate.flops},
              {"bytes", rate.bytes},
              {"median_ms", rate.ms},
              {"tflop_per_s", rate.tflop_per_s()},
              {"gb_per_s", rate.gb_per_s()}};
    if (peaks.tflop_per_s > 0) s["fraction_of_peak_flops"] = rate.tflop_per_s() / peaks.tflop_per_s;
    if (peaks.gb_per_s > 0) s["fraction_of_peak_bandwidth"] = rate.gb_per_s() / peaks.gb_per_s;
    j["work"][stage] = s;
  }
  j["flags"] = flags_json(r.flags);
  return j;
}

}  // namespace

json latency_json(const LatencyStats& s) {
  return {{"median", s.median}, {"p10", s.p10}, {"p90", s.p90}, {"min", s.min}, {"max", s.max}};
}

json planned_json(const PlannedMemory& p) {
  return {{"weights", p.weights},         {"kv_cache", p.kv_cache}, {"activations", p.activations},
          {"of_which_workspace", p.workspace}, {"total", p.total()}};
}

json flags_json(const std::vector<Flag>& flags) {
  json j = json::array();
  for (const Flag& f : flags) j.push_back({{"name", f.name}, {"reason", f.reason}});
  return j;
}

json string_map_json(const std::map<std::string, std::string>& m) {
  json j = json::object();
  for (const auto& [k, v] : m) j[k] = v;
  return j;
}

std::string dump_json(const json& doc) { return doc.dump(2, ' ', false, json::error_handler_t::replace) + "\n"; }

std::string report_json(const Report& r) {
  json doc;
  doc["machine"] = string_map_json(r.machine);
  doc["model"] = string_map_json(r.model);
  doc["thresholds"] = {{"noise_fraction", r.thresholds.noise_fraction},
                       {"max_relative_spread", r.thresholds.max_relative_spread},
                       {"min_memory_growth_fraction", r.thresholds.min_memory_growth_fraction}};
  doc["hardware_peaks"] = {{"tflop_per_s", r.peaks.tflop_per_s}, {"gb_per_s", r.peaks.gb_per_s}};
  doc["runs"] = json::array();
  for (const RunResult& run : r.runs) doc["runs"].push_back(to_json(run, r.peaks));
  return dump_json(doc);
}

}  // namespace varps::bench
