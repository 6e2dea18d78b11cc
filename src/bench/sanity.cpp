// Sanity checks: the flags that catch measurement errors (a loop labelled
// "batched", speed-ups above P, memory that does not move with P, diversity
// that was not computed from the outputs, ...). Each flag has a stable name
// and a reason with the numbers that triggered it.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>
#include <string>
#include <utility>

#include "bench/format.hpp"
#include "bench/measurement_checks.hpp"
#include "varps/bench.hpp"
#include "varps/error.hpp"

namespace varps::bench {
namespace {

const std::set<std::string>& flag_names() {
  static const std::set<std::string> names = {
      "latency_below_single_stream", "speedup_above_streams",      "memory_flat",
      "control_diversity_nonzero",   "diversity_not_from_outputs", "passes_per_scale_not_one",
      "passes_per_scale_not_streams", "spread_too_wide",           "too_few_repeats",
      "latency_not_from_samples"};
  return names;
}

void add(RunResult& r, std::string name, std::string reason) {
  r.flags.push_back(Flag{std::move(name), std::move(reason)});
}

std::string num(double v) { return reason_number(v); }

std::string ms(double v) { return num(v) + " ms"; }

std::string bytes(double v) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "%.0f bytes (%.4g MiB)", v, v / (1024.0 * 1024.0));
  return buf;
}

double noise(const SanityThresholds& t, const RunResult& a, const RunResult& b) {
  return std::max({t.noise_fraction, relative_spread(a.latency_ms), relative_spread(b.latency_ms)});
}

const RunResult* find(const std::vector<RunResult>& runs, const std::string& schedule, int streams) {
  for (const RunResult& r : runs) {
    if (r.schedule == schedule && r.streams == streams) return &r;
  }
  return nullptr;
}

bool close(double a, double b) {
  const double diff = std::fabs(a - b);
  return diff <= 1e-9 || diff <= 1e-9 * std::max(std::fabs(a), std::fabs(b));
}

// Empty when the reported figures match the recomputed ones, else what differs.
std::string diversity_mismatch(const Diversity& reported, const Diversity& computed) {
  std::string what;
  auto note = [&](const std::string& field, const std::string& rep, const std::string& comp) {
    if (!what.empty()) what += ", ";
    what += field + " reported " + rep + " but the outputs give " + comp;
  };
  if (reported.pairs != computed.pairs) {
    note("pairs", std::to_string(reported.pairs), std::to_string(computed.pairs));
  }
  if (reported.token_disagreement_per_scale.size() != computed.token_disagreement_per_scale.size()) {
    note("token_disagreement_per_scale", std::to_string(reported.token_disagreement_per_scale.size()) + " scales",
         std::to_string(computed.token_disagreement_per_scale.size()));
  } else {
    for (size_t k = 0; k < computed.token_disagreement_per_scale.size(); ++k) {
      if (!close(reported.token_disagreement_per_scale[k], computed.token_disagreement_per_scale[k])) {
        note("token_disagreement_per_scale[" + std::to_string(k) + "]", num(reported.token_disagreement_per_scale[k]),
             num(computed.token_disagreement_per_scale[k]));
      }
    }
  }
  if (!close(reported.token_disagreement, computed.token_disagreement)) {
    note("token_disagreement", num(reported.token_disagreement), num(computed.token_disagreement));
  }
  if (!close(reported.pixel_mad, computed.pixel_mad)) {
    note("pixel_mad", num(reported.pixel_mad), num(computed.pixel_mad));
  }
  if (!close(reported.cosine_similarity, computed.cosine_similarity)) {
    note("cosine_similarity", num(reported.cosine_similarity), num(computed.cosine_similarity));
  }
  return what;
}

void check_diversity_source(RunResult& r, const char* field, const StreamOutputs& outputs,
                            const Diversity& reported) {
  const std::string outputs_name = std::string(field) == "diversity" ? "outputs" : "control_outputs";
  if (outputs.tokens.size() != static_cast<size_t>(r.streams)) {
    add(r, "diversity_not_from_outputs",
        outputs_name + " hold " + std::to_string(outputs.tokens.size()) + " streams, the run has " +
            std::to_string(r.streams));
  }
  try {
    const std::string what = diversity_mismatch(reported, diversity(outputs));
    if (!what.empty()) add(r, "diversity_not_from_outputs", std::string(field) + " does not match " + outputs_name + ": " + what);
  } catch (const Error& e) {
    add(r, "diversity_not_from_outputs", outputs_name + " cannot be measured: " + e.what());
  }
}

void check_passes(std::vector<Flag>& flags, const std::string& name, const std::vector<int64_t>& passes, size_t scales,
                  int64_t expected, const std::string& why) {
  auto add_flag = [&](std::string reason) { flags.push_back(Flag{name, std::move(reason)}); };
  if (passes.empty()) {
    add_flag("no backbone pass counts recorded (expected " + std::to_string(expected) + " per scale, " + why + ")");
    return;
  }
  if (scales > 0 && passes.size() != scales) {
    add_flag("backbone passes recorded for " + std::to_string(passes.size()) + " scales, the outputs have " +
             std::to_string(scales));
  }
  for (size_t k = 0; k < passes.size(); ++k) {
    if (passes[k] != expected) {
      add_flag("scale " + std::to_string(k) + " took " + std::to_string(passes[k]) + " backbone passes, expected " +
               std::to_string(expected) + " (" + why + "); passes per scale: " + fmt::join(passes, ","));
      return;
    }
  }
}

}  // namespace

double relative_spread(const LatencyStats& s) { return s.median > 0 ? (s.p90 - s.p10) / s.median : 0.0; }

std::string reason_number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

void check_measurement(const MeasurementRecord& m, int64_t expected_passes, const std::string& pass_flag,
                       const std::string& why, const SanityThresholds& t, std::vector<Flag>& flags) {
  const LatencyStats& lat = m.latency_ms;
  auto add_flag = [&flags](std::string name, std::string reason) {
    flags.push_back(Flag{std::move(name), std::move(reason)});
  };
  if (!m.samples_ms.empty()) {
    const LatencyStats s = latency_stats(m.samples_ms);
    if (!close(s.median, lat.median) || !close(s.p10, lat.p10) || !close(s.p90, lat.p90) || !close(s.min, lat.min) ||
        !close(s.max, lat.max)) {
      add_flag("latency_not_from_samples",
               "reported median " + ms(lat.median) + " [" + ms(lat.p10) + ", " + ms(lat.p90) + "] but the " +
                   std::to_string(m.samples_ms.size()) + " samples give " + ms(s.median) + " [" + ms(s.p10) + ", " +
                   ms(s.p90) + "]");
    }
  }
  check_passes(flags, pass_flag, m.passes_per_scale, m.scales, expected_passes, why);
  if (!m.samples_ms.empty() && lat.p90 - lat.p10 > t.max_relative_spread * lat.median) {
    const double spread = lat.median > 0 ? (lat.p90 - lat.p10) / lat.median : INFINITY;
    add_flag("spread_too_wide", "(p90 − p10) / median = (" + ms(lat.p90) + " − " + ms(lat.p10) + ") / " +
                                    ms(lat.median) + " = " + num(spread) + ", above the threshold " +
                                    num(t.max_relative_spread));
  }
  if (m.samples_ms.size() < 3) {
    add_flag("too_few_repeats", std::to_string(m.samples_ms.size()) +
                                    " latency samples, at least 3 are needed for a median and spread");
  }
}

void apply_sanity_checks(std::vector<RunResult>& runs, const SanityThresholds& t) {
  std::set<std::pair<std::string, int>> seen;
  for (const RunResult& r : runs) {
    if (r.schedule != "batched" && r.schedule != "sequential") {
      throw Error("sanity checks: unknown schedule '" + r.schedule + "' (expected batched or sequential)");
    }
    if (r.streams < 1) throw Error("sanity checks: " + fmt::run_label(r) + " has fewer than one stream");
    if (!seen.emplace(r.schedule, r.streams).second) {
      throw Error("sanity checks: two runs of " + fmt::run_label(r) + "; each (schedule, streams) must be measured once");
    }
  }
  // Idempotent: drop this function's own flags from an earlier call.
  for (RunResult& r : runs) {
    std::erase_if(r.flags, [](const Flag& f) { return flag_names().count(f.name) > 0; });
  }

  for (RunResult& r : runs) {
    const LatencyStats& lat = r.latency_ms;
    const int P = r.streams;
    const bool batched = r.schedule == "batched";

    // 1 and 3: against the same schedule's one-stream run.
    const RunResult* one = P > 1 ? find(runs, r.schedule, 1) : nullptr;
    if (one) {
      const double nz = noise(t, r, *one);
      if (lat.median < one->latency_ms.median * (1.0 - nz)) {
        add(r, "latency_below_single_stream",
            "median " + ms(lat.median) + " with " + std::to_string(P) + " streams is below the one-stream median " +
                ms(one->latency_ms.median) + " by more than the noise allowance of " + fmt::percent(nz));
      }
      const double planned_growth = static_cast<double>(r.planned.total()) - static_cast<double>(one->planned.total());
      const double measured_growth =
          static_cast<double>(r.peak_memory_bytes) - static_cast<double>(one->peak_memory_bytes);
      if (planned_growth > 0 && measured_growth < t.min_memory_growth_fraction * planned_growth) {
        add(r, "memory_flat",
            "planned memory grows by " + bytes(planned_growth) + " from P=1 but the measured peak grows by " +
                bytes(measured_growth) + ", less than " + fmt::percent(t.min_memory_growth_fraction) +
                " of the planned growth");
      }
    }

    // 2: batched against sequential with the same P.
    if (batched) {
      if (const RunResult* seq = find(runs, "sequential", P)) {
        const double nz = noise(t, r, *seq);
        const double limit = P * (1.0 + nz);
        if (seq->latency_ms.median > limit * lat.median) {
          const double speedup = lat.median > 0 ? seq->latency_ms.median / lat.median : INFINITY;
          add(r, "speedup_above_streams",
              "speed-up over sequential is " + num(speedup) + " (" + ms(seq->latency_ms.median) + " / " +
                  ms(lat.median) + "), above P = " + std::to_string(P) + " plus the noise allowance of " +
                  fmt::percent(nz));
        }
      }
    }

    // 4: the control shares one seed, so its streams must be identical.
    const Diversity& c = r.control_diversity;
    bool per_scale_nonzero = false;
    for (double v : c.token_disagreement_per_scale) per_scale_nonzero = per_scale_nonzero || v != 0.0;
    if (c.token_disagreement != 0.0 || per_scale_nonzero || c.pixel_mad != 0.0 ||
        (c.pairs > 0 && !(std::fabs(c.cosine_similarity - 1.0) <= 1e-6))) {
      add(r, "control_diversity_nonzero",
          "streams sharing one seed differ: token disagreement " + num(c.token_disagreement) + ", pixel MAD " +
              num(c.pixel_mad) + ", cosine similarity " + num(c.cosine_similarity) + " (expected 0, 0, 1)");
    }

    // 5: the reported diversity must be what the outputs give.
    check_diversity_source(r, "diversity", r.outputs, r.diversity);
    check_diversity_source(r, "control_diversity", r.control_outputs, r.control_diversity);

    // 5b–8: the latency figures, the pass counters, the spread, the repeats.
    const MeasurementRecord m{r.latency_samples_ms, lat, r.backbone_passes_per_scale,
                              r.outputs.tokens.empty() ? size_t{0} : r.outputs.tokens[0].size()};
    if (batched) {
      check_measurement(m, 1, "passes_per_scale_not_one", "one batched pass for all streams", t, r.flags);
    } else {
      check_measurement(m, P, "passes_per_scale_not_streams", "one pass per stream", t, r.flags);
    }
  }
}

}  // namespace varps::bench
