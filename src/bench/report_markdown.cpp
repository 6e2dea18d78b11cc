// bench.md: the machine and model, the main table, the per-stage table, the
// thresholds and every flag with its reason.
#include <algorithm>
#include <set>
#include <string>

#include "bench/format.hpp"
#include "varps/bench.hpp"

namespace varps::bench {
namespace {

// Diversity needs two streams; with fewer there is no pair to compare.
std::string div_tok(const Diversity& d) { return d.pairs ? fmt::fixed(d.token_disagreement, 4) : "—"; }
std::string div_mad(const Diversity& d) { return d.pairs ? fmt::fixed(d.pixel_mad, 4) : "—"; }
std::string div_cos(const Diversity& d) { return d.pairs ? fmt::fixed(d.cosine_similarity, 6) : "—"; }
std::string div3(const Diversity& d) { return d.pairs ? div_tok(d) + " / " + div_mad(d) + " / " + div_cos(d) : "—"; }

}  // namespace

std::string report_markdown(const Report& r) {
  std::string out = "# VAR-ParScale benchmark\n\n";
  out += fmt::md_key_values("Machine", r.machine) + fmt::md_key_values("Model", r.model);

  out += "## Runs\n\n";
  out += "Latency of one whole request (tokens to pixels), median [p10–p90] over the repeats. "
         "Memory in MiB: measured peak, the peak of the backend's arrays (what the plan counts; on the CPU "
         "the plan's workspace is not an array), and the engine's plan (weights / KV cache / activations). "
         "Diversity is the mean over pairs of streams; the control run gives every stream the same seed "
         "(token disagreement / pixel MAD / cosine, must be 0 / 0 / 1); — where P < 2.\n\n";
  // The garment classifier's feature distance, with the built-in model only.
  const bool features = std::any_of(r.runs.begin(), r.runs.end(),
                                    [](const RunResult& run) { return run.diversity.feature_distance >= 0; });
  std::vector<std::string> head = {"schedule", "P", "median ms [p10–p90]", "images/s", "ms/stream", "peak MiB",
                                   "arrays MiB", "plan MiB (w/kv/act)", "passes/scale", "rows/pass",
                                   "token disagreement", "pixel MAD", "cosine"};
  std::vector<std::string> align = {"---", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---", "---",
                                    "---:", "---:", "---:"};
  if (features) {
    head.push_back("feature distance");
    align.push_back("---:");
  }
  head.insert(head.end(), {"control (tok/MAD/cos)", "flags"});
  align.insert(align.end(), {"---", "---"});
  out += fmt::md_row(head);
  out += fmt::md_row(align);
  for (const RunResult& run : r.runs) {
    std::string flags;
    for (const Flag& f : run.flags) flags += (flags.empty() ? "" : ", ") + f.name;
    if (flags.empty()) flags = "—";
    std::vector<std::string> row = {
        fmt::md_cell(run.schedule),
        std::to_string(run.streams),
        fmt::ms(run.latency_ms.median) + " [" + fmt::ms(run.latency_ms.p10) + "–" + fmt::ms(run.latency_ms.p90) + "]",
        fmt::fixed(run.images_per_s, run.images_per_s >= 10 ? 2 : 4),
        fmt::ms(run.ms_per_stream),
        fmt::mib(run.peak_memory_bytes),
        fmt::mib(run.arrays_peak_bytes),
        fmt::mib(run.planned.total()) + " (" + fmt::mib(run.planned.weights) + "/" + fmt::mib(run.planned.kv_cache) +
            "/" + fmt::mib(run.planned.activations) + ")",
        fmt::compact(run.backbone_passes_per_scale),
        fmt::compact(run.rows_per_pass),
        div_tok(run.diversity),
        div_mad(run.diversity),
        div_cos(run.diversity),
    };
    if (features)
      row.push_back(run.diversity.pairs && run.diversity.feature_distance >= 0
                        ? fmt::fixed(run.diversity.feature_distance, 3)
                        : "—");
    row.insert(row.end(), {div3(run.control_diversity), fmt::md_cell(flags)});
    out += fmt::md_row(row);
  }
  out += "\n";

  std::set<std::string> stages;
  for (const RunResult& run : r.runs) {
    for (const auto& [stage, v] : run.stages_ms) stages.insert(stage);
  }
  out += "## Stages\n\nMedian milliseconds per stage.\n\n";
  if (stages.empty()) {
    out += "(no stage timings recorded)\n\n";
  } else {
    std::vector<std::string> head = {"schedule", "P"}, align = {"---", "---:"};
    for (const std::string& s : stages) {
      head.push_back(fmt::md_cell(s));
      align.push_back("---:");
    }
    out += fmt::md_row(head) + fmt::md_row(align);
    for (const RunResult& run : r.runs) {
      std::vector<std::string> cells = {fmt::md_cell(run.schedule), std::to_string(run.streams)};
      for (const std::string& s : stages) {
        auto it = run.stages_ms.find(s);
        cells.push_back(it == run.stages_ms.end() ? "—" : fmt::ms(it->second));
      }
      out += fmt::md_row(cells);
    }
    out += "\n";
  }

  out += "## Achieved rates\n\n";
  out += "Each stage's work counted from the shapes (products and attention: FLOPs; weights read once per pass, "
         "KV cache, logits and convolution inputs and outputs: bytes) over its median time. Elementwise work is "
         "not counted, so these are lower bounds of what the hardware did. A convolution computed another way "
         "(the CPU's Winograd 3×3 convolutions multiply 4 times less) is counted as the direct sum, so the decode "
         "rate can exceed the hardware's.";
  const bool peaks = r.peaks.tflop_per_s > 0 || r.peaks.gb_per_s > 0;
  if (peaks)
    out += " Fractions are of the given peaks: " + fmt::shortest(r.peaks.tflop_per_s) + " TFLOP/s and " +
           fmt::shortest(r.peaks.gb_per_s) + " GB/s.";
  out += "\n\n";
  {
    std::vector<std::string> head = {"schedule", "P"}, align = {"---", "---:"};
    for (const char* stage : {"transformer", "decode"}) {
      head.push_back(std::string(stage) + " TFLOP/s");
      head.push_back(std::string(stage) + " GB/s");
      align.insert(align.end(), {"---:", "---:"});
    }
    out += fmt::md_row(head) + fmt::md_row(align);
    auto with_fraction = [](double v, double peak) {
      return fmt::fixed(v, 3) + (peak > 0 ? " (" + fmt::fixed(100 * v / peak, 1) + " %)" : "");
    };
    for (const RunResult& run : r.runs) {
      std::vector<std::string> cells = {fmt::md_cell(run.schedule), std::to_string(run.streams)};
      const auto rates = stage_rates(run.work, run.stages_ms);
      for (const char* stage : {"transformer", "decode"}) {
        const StageRate& s = rates.at(stage);
        cells.push_back(with_fraction(s.tflop_per_s(), r.peaks.tflop_per_s));
        cells.push_back(with_fraction(s.gb_per_s(), r.peaks.gb_per_s));
      }
      out += fmt::md_row(cells);
    }
    out += "\n";
  }
  {
    // The scales one by one: the small ones stream the weights, the large ones compute.
    out += "Per scale of the transformer, TFLOP/s · GB/s:\n\n";
    std::vector<std::string> head = {"scale"}, align = {"---:"};
    for (const RunResult& run : r.runs) {
      head.push_back(run.schedule + " P=" + std::to_string(run.streams));
      align.push_back("---:");
    }
    out += fmt::md_row(head) + fmt::md_row(align);
    const size_t scales = r.runs.empty() ? 0 : r.runs.front().work.transformer.size();
    for (size_t si = 0; si < scales; ++si) {
      std::vector<std::string> cells = {std::to_string(si + 1)};
      for (const RunResult& run : r.runs) {
        const auto rates = stage_rates(run.work, run.stages_ms);
        const auto it = rates.find("transformer_s" + std::to_string(si));
        cells.push_back(it == rates.end() ? "—"
                                          : fmt::fixed(it->second.tflop_per_s(), 3) + " · " +
                                                fmt::fixed(it->second.gb_per_s(), 1));
      }
      out += fmt::md_row(cells);
    }
    out += "\n";
  }

  out += "## Thresholds\n\n";
  out += "- noise: latency differences below " + fmt::percent(r.thresholds.noise_fraction) +
         " of the median (or the runs' own (p90 − p10) / median, if larger) count as noise\n";
  out += "- spread: a run whose (p90 − p10) / median exceeds " + fmt::shortest(r.thresholds.max_relative_spread) +
         " is too noisy to trust\n";
  out += "- memory: the measured peak must grow by at least " +
         fmt::percent(r.thresholds.min_memory_growth_fraction) + " of the planned growth over P = 1\n\n";

  out += "## Flags\n\n";
  bool any = false;
  for (const RunResult& run : r.runs) {
    for (const Flag& f : run.flags) {
      out += "- **" + fmt::md_cell(fmt::run_label(run)) + "** `" + f.name + "`: " + fmt::md_cell(f.reason) + "\n";
      any = true;
    }
  }
  if (!any) out += "no flags\n";
  return out;
}

}  // namespace varps::bench
