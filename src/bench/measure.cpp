#include "bench/measure.hpp"


#include "varps/bench.hpp"
#include "varps/bench_runner.hpp"

namespace varps::bench {

Measurement measure(const Pipeline& pipe, const std::vector<ImageRequest>& req, const GenerateOptions& opts,
                    int warmup, int repeats, const std::function<void(int, double)>& on_repeat) {
  Measurement m;
  pipe.release_cached_memory();
  reset_peak_rss();
  pipe.reset_peak_device_memory();
  for (int i = 0; i < warmup; ++i) pipe.generate(req, opts);
  for (int i = 0; i < repeats; ++i) {
    // Device-synchronised: the request ends with a download of its outputs,
    // and on a device the marks are events on the backend's stream.
    const std::unique_ptr<WorkClock> clock = pipe.work_clock();
    clock->mark();
    m.last = pipe.generate(req, opts);
    clock->mark();
    const double ms = clock->intervals_ms().at(0);
    m.samples_ms.push_back(ms);
    m.stages.push_back(m.last.timings);
    if (on_repeat) on_repeat(i, ms);
  }
  // On a device, the memory that matters is the device's: the peak of the
  // backend's arrays (weights, caches, activations, workspaces).
  const DeviceMemoryStats device = pipe.device_memory();
  m.peak_memory_bytes = device.available ? device.peak : peak_rss_bytes();
  m.arrays_peak_bytes = device.peak;
  return m;
}

std::string latency_measure(const Pipeline& pipe) {
  return pipe.work_clock()->kind() + " around each request, which ends with the download of its outputs";
}

std::string memory_measure(const Pipeline& pipe) {
  if (pipe.device_memory().available)
    return "device peak of the " + pipe.backend_name() +
           " backend's arrays (weights, KV cache, activations, workspaces; reset per run)";
  return reset_peak_rss() ? "process peak RSS (VmHWM, reset per run)"
                          : "process peak RSS (VmHWM, not resettable: lifetime peak)";
}

std::vector<int64_t> rows_per_pass(const EngineCounters& c) {
  std::vector<int64_t> out;
  for (size_t si = 0; si < c.passes_per_scale.size(); ++si) {
    const int64_t passes = c.passes_per_scale[si];
    out.push_back(passes > 0 ? c.rows_per_scale[si] / passes : 0);
  }
  return out;
}

std::map<std::string, double> stage_medians(const std::vector<StageTimings>& runs) {
  std::map<std::string, std::vector<double>> samples;
  for (const StageTimings& t : runs) {
    double transformer = 0;
    for (size_t si = 0; si < t.transformer_ms.size(); ++si) {
      samples["transformer_s" + std::to_string(si)].push_back(t.transformer_ms[si]);
      transformer += t.transformer_ms[si];
    }
    samples["transformer"].push_back(transformer);
    samples["setup"].push_back(t.setup_ms);
    samples["sampling"].push_back(t.sampling_ms);
    samples["residual"].push_back(t.residual_ms);
    samples["decode"].push_back(t.decode_ms);
  }
  std::map<std::string, double> out;
  for (auto& [name, v] : samples) out[name] = latency_stats(std::move(v)).median;
  return out;
}

std::map<std::string, StageRate> stage_rates(const RequestWork& work, const std::map<std::string, double>& stages_ms) {
  auto ms = [&](const std::string& stage) {
    const auto it = stages_ms.find(stage);
    return it == stages_ms.end() ? 0.0 : it->second;
  };
  const StageWork t = work.transformer_total();
  std::map<std::string, StageRate> rates = {{"transformer", {t.flops, t.bytes, ms("transformer")}},
                                            {"decode", {work.decode.flops, work.decode.bytes, ms("decode")}}};
  for (size_t si = 0; si < work.transformer.size(); ++si) {
    const std::string name = "transformer_s" + std::to_string(si);
    rates[name] = {work.transformer[si].flops, work.transformer[si].bytes, ms(name)};
  }
  return rates;
}

}  // namespace varps::bench
