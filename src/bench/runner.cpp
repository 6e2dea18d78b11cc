// The benchmark runner: one request of P streams per (schedule, P), timed
// after warm-up over several repeats, with its own memory peak, the engine's
// counters and the outputs (plus a control request whose streams share one
// seed) that diversity is computed from.
#include <algorithm>
#include <string>

#include "bench/measure.hpp"
#include "varps/bench_runner.hpp"
#include "varps/error.hpp"

namespace varps::bench {

namespace {

StreamOutputs outputs_of(const GeneratedImages& g) {
  StreamOutputs o;
  o.tokens = g.tokens;
  const size_t n = g.count > 0 ? g.pixels.size() / static_cast<size_t>(g.count) : 0;
  for (int64_t i = 0; i < g.count; ++i)
    o.images.emplace_back(g.pixels.begin() + i * n, g.pixels.begin() + (i + 1) * n);
  return o;
}

RunResult run_one(const Pipeline& pipe, const BenchConfig& cfg, Schedule schedule, int P) {
  const std::vector<ImageRequest> req = expand_streams({cfg.class_id}, P, cfg.seed, cfg.sampling);
  GenerateOptions opts;
  opts.schedule = schedule;
  opts.fast = cfg.fast;

  RunResult r;
  r.schedule = schedule_name(schedule);
  r.streams = P;
  const MemoryPlan plan = pipe.plan_memory(req, schedule, cfg.fast);
  r.planned = {plan.weights, plan.kv_cache, plan.activations, plan.workspace};
  // What one more stream adds to a batched pass: its rows' KV cache.
  const MemoryPlan one = pipe.plan_memory({req.front()}, Schedule::Batched);
  r.kv_bytes_per_stream = one.kv_cache;

  const Measurement m = measure(pipe, req, opts, cfg.warmup, cfg.repeats, [&](int i, double ms) {
    if (cfg.progress)
      cfg.progress(r.schedule + " P=" + std::to_string(P) + " repeat " + std::to_string(i + 1) + "/" +
                   std::to_string(cfg.repeats) + ": " + std::to_string(static_cast<int64_t>(ms + 0.5)) + " ms");
  });
  r.latency_samples_ms = m.samples_ms;
  r.peak_memory_bytes = m.peak_memory_bytes;
  r.arrays_peak_bytes = m.arrays_peak_bytes;
  const GeneratedImages& last = m.last;

  r.latency_ms = latency_stats(r.latency_samples_ms);
  r.images_per_s = r.latency_ms.median > 0 ? P * 1000.0 / r.latency_ms.median : 0;
  r.ms_per_stream = r.latency_ms.median / P;
  r.backbone_passes_per_scale = last.counters.passes_per_scale;
  r.rows_per_pass = rows_per_pass(last.counters);
  r.stages_ms = stage_medians(m.stages);
  if (!cfg.fast.any()) r.work = pipe.work(req, schedule);
  r.outputs = outputs_of(last);
  r.diversity = diversity(r.outputs, cfg.garment_features);

  // Control: every stream with the same class and seed must come out identical.
  const std::vector<ImageRequest> control(static_cast<size_t>(P), req.front());
  r.control_outputs = outputs_of(pipe.generate(control, opts));
  r.control_diversity = diversity(r.control_outputs, cfg.garment_features);
  return r;
}

}  // namespace

Report run_bench(const Pipeline& pipe, const BenchConfig& cfg, std::map<std::string, std::string> machine,
                 std::map<std::string, std::string> model) {
  if (cfg.streams.empty() || cfg.schedules.empty()) throw Error("bench: no streams or no schedules to run");
  if (cfg.repeats < 1) throw Error("bench: repeats must be >= 1");
  if (cfg.warmup < 0) throw Error("bench: warmup must be >= 0");
  std::vector<int> streams = cfg.streams;
  std::sort(streams.begin(), streams.end());
  streams.erase(std::unique(streams.begin(), streams.end()), streams.end());
  if (streams.front() < 1) throw Error("bench: stream counts must be >= 1");

  Report rep;
  rep.machine = std::move(machine);
  rep.model = std::move(model);
  rep.machine["threads"] = std::to_string(pipe.threads());
  rep.machine["latency_measure"] = latency_measure(pipe);
  rep.machine["memory_measure"] = memory_measure(pipe);
  rep.peaks = cfg.peaks;
  for (int P : streams)
    for (Schedule s : cfg.schedules) rep.runs.push_back(run_one(pipe, cfg, s, P));
  apply_sanity_checks(rep.runs, rep.thresholds);
  return rep;
}

}  // namespace varps::bench
