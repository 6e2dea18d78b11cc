// bench.csv: a header and one line per run with the scalar figures.
#include <string>
#include <vector>

#include "bench/format.hpp"
#include "varps/bench.hpp"

namespace varps::bench {

std::string report_csv(const Report& r) {
  static const char* const header =
      "schedule,streams,median_ms,p10_ms,p90_ms,min_ms,max_ms,images_per_s,ms_per_stream,peak_memory_bytes,"
      "planned_total_bytes,planned_weights_bytes,planned_kv_cache_bytes,planned_activations_bytes,"
      "arrays_peak_bytes,kv_bytes_per_stream,backbone_passes_per_scale,rows_per_pass,token_disagreement,pixel_mad,cosine_similarity,"
      "control_token_disagreement,control_pixel_mad,control_cosine_similarity,flags\n";
  std::string out = header;
  for (const RunResult& run : r.runs) {
    std::string flags;
    for (const Flag& f : run.flags) flags += (flags.empty() ? "" : ";") + f.name;
    const std::vector<std::string> fields = {
        run.schedule,
        std::to_string(run.streams),
        fmt::shortest(run.latency_ms.median),
        fmt::shortest(run.latency_ms.p10),
        fmt::shortest(run.latency_ms.p90),
        fmt::shortest(run.latency_ms.min),
        fmt::shortest(run.latency_ms.max),
        fmt::shortest(run.images_per_s),
        fmt::shortest(run.ms_per_stream),
        std::to_string(run.peak_memory_bytes),
        std::to_string(run.planned.total()),
        std::to_string(run.planned.weights),
        std::to_string(run.planned.kv_cache),
        std::to_string(run.planned.activations),
        std::to_string(run.arrays_peak_bytes),
        std::to_string(run.kv_bytes_per_stream),
        fmt::join(run.backbone_passes_per_scale, ";"),
        fmt::join(run.rows_per_pass, ";"),
        fmt::shortest(run.diversity.token_disagreement),
        fmt::shortest(run.diversity.pixel_mad),
        fmt::shortest(run.diversity.cosine_similarity),
        fmt::shortest(run.control_diversity.token_disagreement),
        fmt::shortest(run.control_diversity.pixel_mad),
        fmt::shortest(run.control_diversity.cosine_similarity),
        flags,
    };
    out += fmt::csv_line(fields);
  }
  return out;
}

}  // namespace varps::bench
