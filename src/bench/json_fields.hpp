#pragma once
// JSON pieces shared by bench.json and compare.json (private to src/bench).
#include <nlohmann/json.hpp>

#include <map>
#include <string>
#include <vector>

#include "varps/bench.hpp"

namespace varps::bench {

nlohmann::ordered_json latency_json(const LatencyStats& s);         // median, p10, p90, min, max
nlohmann::ordered_json planned_json(const PlannedMemory& p);        // weights, kv_cache, activations, total
nlohmann::ordered_json flags_json(const std::vector<Flag>& flags);  // [{name, reason}]
nlohmann::ordered_json string_map_json(const std::map<std::string, std::string>& m);
// The whole document, indented, invalid UTF-8 replaced (e.g. a CPU model string).
std::string dump_json(const nlohmann::ordered_json& doc);

}  // namespace varps::bench
