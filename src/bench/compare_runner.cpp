// The ParScale-versus-larger-model comparison: measurements and checks.
#include <algorithm>
#include <cmath>

#include "bench/measure.hpp"
#include "bench/measurement_checks.hpp"
#include "varps/adapter.hpp"
#include "varps/bench_runner.hpp"
#include "varps/error.hpp"
#include "varps/parscale_compare.hpp"

namespace varps::bench {

namespace {

CompareEntry measure_entry(const Pipeline& pipe, const std::string& label, int streams, int prefix_tokens,
                           const CompareConfig& cfg) {
  const int class_id = cfg.unconditional ? pipe.var_config().num_classes : cfg.class_id;
  const std::vector<ImageRequest> req = expand_streams({class_id}, cfg.images, cfg.seed, cfg.sampling);
  CompareEntry e;
  e.label = label;
  e.model = pipe.var_config().describe();
  e.parscale_streams = streams;
  e.prefix_tokens = prefix_tokens;
  const MemoryPlan plan = pipe.plan_memory(req);
  e.planned = {plan.weights, plan.kv_cache, plan.activations, plan.workspace};
  e.parameters = pipe.parameters();
  const Measurement m = measure(pipe, req, GenerateOptions{}, cfg.warmup, cfg.repeats, [&](int i, double ms) {
    if (cfg.progress)
      cfg.progress(label + " repeat " + std::to_string(i + 1) + "/" + std::to_string(cfg.repeats) + ": " +
                   std::to_string(static_cast<int64_t>(ms + 0.5)) + " ms");
  });
  e.latency_samples_ms = m.samples_ms;
  e.latency_ms = latency_stats(m.samples_ms);
  e.peak_memory_bytes = m.peak_memory_bytes;
  e.backbone_passes_per_scale = m.last.counters.passes_per_scale;
  e.rows_per_pass = rows_per_pass(m.last.counters);
  e.stages_ms = stage_medians(m.stages);
  return e;
}

void add(CompareEntry& e, std::string name, std::string reason) {
  e.flags.push_back(Flag{std::move(name), std::move(reason)});
}

std::string num(double v) { return reason_number(v); }

}  // namespace

CompareReport run_parscale_comparison(const std::function<Pipeline()>& load_base, const std::string& base_label,
                                      const CompareConfig& cfg,
                                      const std::function<Pipeline(const std::string&)>& load_larger,
                                      std::map<std::string, std::string> machine,
                                      std::map<std::string, std::string> model) {
  if (cfg.repeats < 1) throw Error("compare: repeats must be >= 1");
  if (cfg.warmup < 0) throw Error("compare: warmup must be >= 0");
  if (cfg.images < 1) throw Error("compare: images must be >= 1");
  for (int P : cfg.streams)
    if (P < 1) throw Error("compare: stream counts must be >= 1, got " + std::to_string(P));
  std::vector<int> streams = cfg.streams;
  std::sort(streams.begin(), streams.end());
  streams.erase(std::unique(streams.begin(), streams.end()), streams.end());

  CompareReport rep;
  rep.machine = std::move(machine);
  rep.model = std::move(model);
  {
    Pipeline base = load_base();
    rep.machine["latency_measure"] = latency_measure(base);
    rep.machine["memory_measure"] = memory_measure(base);
    rep.machine["threads"] = std::to_string(base.threads());
    rep.entries.push_back(measure_entry(base, base_label, 0, 0, cfg));
    for (int P : streams) {
      base.detach_adapter();  // the previous adapter's memory goes first
      base.attach_adapter(ParScaleAdapter::random_init(base.var_config(), P, cfg.prefix_tokens, cfg.adapter_seed));
      rep.entries.push_back(
          measure_entry(base, base_label + " + ParScale P=" + std::to_string(P), P, cfg.prefix_tokens, cfg));
    }
  }
  for (const std::string& name : cfg.larger) {
    if (cfg.progress) cfg.progress("building " + name);
    const Pipeline pipe = load_larger(name);
    rep.entries.push_back(measure_entry(pipe, name, 0, 0, cfg));
  }

  const CompareEntry& b = rep.entries.front();
  auto rel = [](double x, double base_value) { return base_value > 0 ? (x - base_value) / base_value : 0.0; };
  for (CompareEntry& e : rep.entries) {
    e.latency_increase = rel(e.latency_ms.median, b.latency_ms.median);
    e.memory_increase = rel(static_cast<double>(e.peak_memory_bytes), static_cast<double>(b.peak_memory_bytes));
    e.parameter_increase = rel(static_cast<double>(e.parameters), static_cast<double>(b.parameters));
  }
  apply_comparison_checks(rep.entries, rep.thresholds);
  return rep;
}

void apply_comparison_checks(std::vector<CompareEntry>& entries, const SanityThresholds& t) {
  if (entries.empty()) return;
  const CompareEntry base = entries.front();
  for (size_t i = 0; i < entries.size(); ++i) {
    CompareEntry& e = entries[i];
    check_measurement({e.latency_samples_ms, e.latency_ms, e.backbone_passes_per_scale, 0}, 1,
                      "passes_per_scale_not_one", "one batched pass for all streams", t, e.flags);
    if (i == 0) continue;
    const bool more_work = e.parscale_streams >= 2 || (e.parscale_streams == 0 && e.parameters > base.parameters);
    const double noise = std::max({t.noise_fraction, relative_spread(e.latency_ms), relative_spread(base.latency_ms)});
    if (more_work && e.latency_ms.median < base.latency_ms.median * (1.0 - noise))
      add(e, "latency_below_base",
          "median " + num(e.latency_ms.median) + " ms is below the base model's " + num(base.latency_ms.median) +
              " ms beyond noise (" + num(noise * 100) + "%) although it does more work");
    if (e.parscale_streams == 0 && e.parameters > base.parameters && e.peak_memory_bytes <= base.peak_memory_bytes)
      add(e, "memory_not_above_base",
          "peak " + num(static_cast<double>(e.peak_memory_bytes)) + " bytes is not above the base model's " +
              num(static_cast<double>(base.peak_memory_bytes)) + " bytes although its weights are larger");
  }
}

}  // namespace varps::bench
