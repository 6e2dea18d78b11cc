// compare.json / compare.csv / compare.md: the ParScale-versus-larger-model
// table with the machine, the model and every flag.
#include <nlohmann/json.hpp>

#include <set>

#include "bench/format.hpp"
#include "bench/json_fields.hpp"
#include "varps/parscale_compare.hpp"

namespace varps::bench {
namespace {

using json = nlohmann::ordered_json;

std::string flag_names(const CompareEntry& e, const char* sep) {
  std::string s;
  for (const Flag& f : e.flags) s += (s.empty() ? "" : sep) + f.name;
  return s;
}

std::string signed_percent(double fraction) {
  std::string s = fraction >= 0 ? "+" : "";
  s += fmt::fixed(fraction * 100.0, 1);
  s += '%';
  return s;
}

std::string millions(uint64_t n) { return fmt::fixed(static_cast<double>(n) / 1e6, 1); }

}  // namespace

std::string comparison_json(const CompareReport& r) {
  json doc;
  doc["machine"] = string_map_json(r.machine);
  doc["model"] = string_map_json(r.model);
  doc["thresholds"] = {{"noise_fraction", r.thresholds.noise_fraction},
                       {"max_relative_spread", r.thresholds.max_relative_spread}};
  doc["entries"] = json::array();
  for (const CompareEntry& e : r.entries) {
    json j;
    j["label"] = e.label;
    j["model"] = e.model;
    j["parscale_streams"] = e.parscale_streams;
    j["prefix_tokens"] = e.prefix_tokens;
    j["parameters"] = e.parameters;
    j["latency_ms"] = latency_json(e.latency_ms);
    j["latency_samples_ms"] = e.latency_samples_ms;
    j["peak_memory_bytes"] = e.peak_memory_bytes;
    j["planned_memory_bytes"] = planned_json(e.planned);
    j["increase_over_base"] = {
        {"latency", e.latency_increase}, {"peak_memory", e.memory_increase}, {"parameters", e.parameter_increase}};
    j["backbone_passes_per_scale"] = e.backbone_passes_per_scale;
    j["rows_per_pass"] = e.rows_per_pass;
    j["stages_ms"] = json::object();
    for (const auto& [stage, v] : e.stages_ms) j["stages_ms"][stage] = v;
    j["flags"] = flags_json(e.flags);
    doc["entries"].push_back(j);
  }
  return dump_json(doc);
}

std::string comparison_csv(const CompareReport& r) {
  std::string out =
      "label,parscale_streams,prefix_tokens,parameters,median_ms,p10_ms,p90_ms,min_ms,max_ms,peak_memory_bytes,"
      "planned_total_bytes,latency_increase,memory_increase,parameter_increase,rows_per_pass,"
      "backbone_passes_per_scale,flags\n";
  for (const CompareEntry& e : r.entries) {
    const std::vector<std::string> fields = {
        e.label,
        std::to_string(e.parscale_streams),
        std::to_string(e.prefix_tokens),
        std::to_string(e.parameters),
        fmt::shortest(e.latency_ms.median),
        fmt::shortest(e.latency_ms.p10),
        fmt::shortest(e.latency_ms.p90),
        fmt::shortest(e.latency_ms.min),
        fmt::shortest(e.latency_ms.max),
        std::to_string(e.peak_memory_bytes),
        std::to_string(e.planned.total()),
        fmt::shortest(e.latency_increase),
        fmt::shortest(e.memory_increase),
        fmt::shortest(e.parameter_increase),
        fmt::join(e.rows_per_pass, ";"),
        fmt::join(e.backbone_passes_per_scale, ";"),
        flag_names(e, ";"),
    };
    out += fmt::csv_line(fields);
  }
  return out;
}

std::string comparison_markdown(const CompareReport& r) {
  std::string out = "# ParScale against larger models\n\n";
  out += fmt::md_key_values("Machine", r.machine) + fmt::md_key_values("Model", r.model);
  out += "## Cost\n\n";
  const auto measure = r.machine.find("memory_measure");
  out += "One request (tokens to pixels) per repeat, median [p10–p90] after warm-up. Peak: " +
         (measure != r.machine.end() ? measure->second : std::string("the measured peak")) +
         ", during that row's requests (weights included). Increases are over the first row, the "
         "base model without an adapter. The adapters are untrained (random prefixes, uniform aggregation): this "
         "table measures cost, not quality.\n\n";
  out += fmt::md_row({"model", "ParScale P", "T", "params (M)", "+params", "rows/pass", "median ms [p10–p90]", "+latency",
              "peak MiB", "+memory", "plan MiB (w/kv/act)", "passes/scale", "flags"});
  out += fmt::md_row({"---", "---:", "---:", "---:", "---:", "---", "---:", "---:", "---:", "---:", "---:", "---", "---"});
  for (const CompareEntry& e : r.entries) {
    const std::string flags = flag_names(e, ", ");
    out += fmt::md_row({
        fmt::md_cell(e.label),
        e.parscale_streams ? std::to_string(e.parscale_streams) : "—",
        e.parscale_streams ? std::to_string(e.prefix_tokens) : "—",
        millions(e.parameters),
        signed_percent(e.parameter_increase),
        fmt::compact(e.rows_per_pass),
        fmt::ms(e.latency_ms.median) + " [" + fmt::ms(e.latency_ms.p10) + "–" + fmt::ms(e.latency_ms.p90) + "]",
        signed_percent(e.latency_increase),
        fmt::mib(e.peak_memory_bytes),
        signed_percent(e.memory_increase),
        fmt::mib(e.planned.total()) + " (" + fmt::mib(e.planned.weights) + "/" + fmt::mib(e.planned.kv_cache) + "/" +
            fmt::mib(e.planned.activations) + ")",
        fmt::compact(e.backbone_passes_per_scale),
        flags.empty() ? "—" : fmt::md_cell(flags),
    });
  }
  out += "\n## Stages\n\nMedian milliseconds.\n\n";
  const std::vector<std::string> stages = {"setup", "transformer", "sampling", "residual", "decode"};
  std::vector<std::string> head = {"model"}, align = {"---"};
  for (const auto& s : stages) {
    head.push_back(s);
    align.push_back("---:");
  }
  out += fmt::md_row(head) + fmt::md_row(align);
  for (const CompareEntry& e : r.entries) {
    std::vector<std::string> cells = {fmt::md_cell(e.label)};
    for (const auto& s : stages) {
      const auto it = e.stages_ms.find(s);
      cells.push_back(it == e.stages_ms.end() ? "—" : fmt::ms(it->second));
    }
    out += fmt::md_row(cells);
  }
  out += "\n## Flags\n\n";
  bool any = false;
  for (const CompareEntry& e : r.entries)
    for (const Flag& f : e.flags) {
      out += "- **" + fmt::md_cell(e.label) + "** `" + f.name + "`: " + fmt::md_cell(f.reason) + "\n";
      any = true;
    }
  if (!any) out += "no flags\n";
  return out;
}

void write_comparison(const std::filesystem::path& dir, const CompareReport& r) {
  create_report_dir(dir);
  write_text_file(dir / "compare.json", comparison_json(r));
  write_text_file(dir / "compare.csv", comparison_csv(r));
  write_text_file(dir / "compare.md", comparison_markdown(r));
}

}  // namespace varps::bench
