// The benchmark's maths and reports: latency statistics, diversity on
// hand-made outputs, every sanity flag planted in a clean measurement set,
// and the report files.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "test_files.hpp"
#include "varps/bench.hpp"
#include "varps/error.hpp"

namespace varps::bench {
namespace {

using test::error_of;
constexpr uint64_t kMiB = 1024 * 1024;

// ---------------------------------------------------------------- latency

TEST(BenchLatency, OddCountMatchesNumpyLinear) {
  // numpy.percentile([1, 2, 3, 4, 5], [50, 10, 90]) = 3, 1.4, 4.6
  const LatencyStats s = latency_stats({5, 1, 3, 2, 4});
  EXPECT_DOUBLE_EQ(s.median, 3.0);
  EXPECT_DOUBLE_EQ(s.p10, 1.4);
  EXPECT_DOUBLE_EQ(s.p90, 4.6);
  EXPECT_DOUBLE_EQ(s.min, 1.0);
  EXPECT_DOUBLE_EQ(s.max, 5.0);
}

TEST(BenchLatency, EvenCountInterpolates) {
  // numpy.percentile([10, 20, 30, 40], [50, 10, 90]) = 25, 13, 37
  const LatencyStats s = latency_stats({40, 10, 30, 20});
  EXPECT_DOUBLE_EQ(s.median, 25.0);
  EXPECT_DOUBLE_EQ(s.p10, 13.0);
  EXPECT_DOUBLE_EQ(s.p90, 37.0);
  EXPECT_DOUBLE_EQ(s.min, 10.0);
  EXPECT_DOUBLE_EQ(s.max, 40.0);
}

TEST(BenchLatency, OneSampleAndNone) {
  const LatencyStats one = latency_stats({7.5});
  EXPECT_EQ(one.median, 7.5);
  EXPECT_EQ(one.p10, 7.5);
  EXPECT_EQ(one.p90, 7.5);
  EXPECT_EQ(one.min, 7.5);
  EXPECT_EQ(one.max, 7.5);
  const LatencyStats none = latency_stats({});
  EXPECT_EQ(none.median, 0.0);
  EXPECT_EQ(none.p90, 0.0);
  EXPECT_EQ(none.max, 0.0);
}

TEST(BenchLatency, PercentileEndsAndBadInput) {
  EXPECT_DOUBLE_EQ(percentile({1, 2, 4}, 0.0), 1.0);
  EXPECT_DOUBLE_EQ(percentile({1, 2, 4}, 1.0), 4.0);
  EXPECT_DOUBLE_EQ(percentile({1, 2, 4}, 0.75), 3.0);  // position 1.5
  EXPECT_THROW(percentile({1, 2}, 1.5), Error);
  EXPECT_THROW(percentile({2, 1}, 0.5), Error);  // not sorted
  EXPECT_CONTAINS(error_of([] { latency_stats({1.0, NAN, 2.0}); }), "sample 1");
}

// ---------------------------------------------------------------- diversity

TEST(BenchDiversity, HandComputedThreeStreams) {
  StreamOutputs out;
  out.tokens = {{{5}, {1, 2, 3, 4}}, {{5}, {1, 2, 3, 9}}, {{6}, {0, 2, 3, 9}}};
  out.images = {{1, 0, 0, 0}, {0, 1, 0, 0}, {1, 1, 0, 0}};
  const Diversity d = diversity(out);
  EXPECT_EQ(d.pairs, 3);
  // Pairs (0,1), (0,2), (1,2): scale 0 differs 0, 1, 1 of 1; scale 1 differs 1, 2, 1 of 4.
  ASSERT_EQ(d.token_disagreement_per_scale.size(), 2u);
  EXPECT_DOUBLE_EQ(d.token_disagreement_per_scale[0], 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(d.token_disagreement_per_scale[1], 1.0 / 3.0);
  EXPECT_DOUBLE_EQ(d.token_disagreement, (1.0 / 5 + 3.0 / 5 + 2.0 / 5) / 3);
  EXPECT_DOUBLE_EQ(d.pixel_mad, (0.5 + 0.25 + 0.25) / 3);
  EXPECT_DOUBLE_EQ(d.cosine_similarity, (0.0 + 2.0 / std::sqrt(2.0)) / 3);
}

TEST(BenchDiversity, IdenticalStreamsAreZero) {
  StreamOutputs out;
  out.tokens.assign(4, TokenMaps{{3}, {1, 2, 3, 4}, {7, 7, 7, 7, 7, 7, 7, 7, 7}});
  out.images.assign(4, std::vector<float>{0.2f, 0.4f, 0.9f, 0.0f, 0.5f, 0.1f});
  const Diversity d = diversity(out);
  EXPECT_EQ(d.pairs, 6);
  EXPECT_EQ(d.token_disagreement_per_scale, std::vector<double>(3, 0.0));
  EXPECT_EQ(d.token_disagreement, 0.0);
  EXPECT_EQ(d.pixel_mad, 0.0);
  EXPECT_NEAR(d.cosine_similarity, 1.0, 1e-12);
}

TEST(BenchDiversity, ZeroImages) {
  StreamOutputs both_black;
  both_black.tokens = {{{1}}, {{1}}};
  both_black.images = {{0, 0, 0}, {0, 0, 0}};
  EXPECT_EQ(diversity(both_black).cosine_similarity, 1.0);
  StreamOutputs one_black = both_black;
  one_black.images[1] = {0.5f, 0, 0};
  const Diversity d = diversity(one_black);
  EXPECT_EQ(d.cosine_similarity, 0.0);
  EXPECT_DOUBLE_EQ(d.pixel_mad, 0.5 / 3);
}

TEST(BenchDiversity, WithoutImagesPixelMetricsAreZero) {
  StreamOutputs out;
  out.tokens = {{{1, 2}}, {{1, 3}}};
  const Diversity d = diversity(out);
  EXPECT_EQ(d.pairs, 1);
  EXPECT_DOUBLE_EQ(d.token_disagreement, 0.5);
  EXPECT_EQ(d.pixel_mad, 0.0);
  EXPECT_EQ(d.cosine_similarity, 0.0);
}

TEST(BenchDiversity, FewerThanTwoStreams) {
  StreamOutputs one;
  one.tokens = {{{1}, {1, 2, 3, 4}, {0, 0, 0, 0, 0, 0, 0, 0, 0}}};
  one.images = {{0.5f, 0.5f, 0.5f}};
  const Diversity d1 = diversity(one);
  EXPECT_EQ(d1.pairs, 0);
  EXPECT_EQ(d1.token_disagreement_per_scale, std::vector<double>(3, 0.0));
  EXPECT_EQ(d1.token_disagreement, 0.0);
  EXPECT_EQ(d1.pixel_mad, 0.0);
  EXPECT_EQ(d1.cosine_similarity, 0.0);
  const Diversity d0 = diversity(StreamOutputs{});
  EXPECT_EQ(d0.pairs, 0);
  EXPECT_TRUE(d0.token_disagreement_per_scale.empty());
  EXPECT_EQ(d0.cosine_similarity, 0.0);
}

TEST(BenchDiversity, MismatchedInputsThrow) {
  StreamOutputs scales;
  scales.tokens = {{{1}, {1, 2, 3, 4}}, {{1}}};
  EXPECT_CONTAINS(error_of([&] { diversity(scales); }), "scales");
  StreamOutputs sizes;
  sizes.tokens = {{{1}, {1, 2, 3, 4}}, {{1}, {1, 2, 3}}};
  EXPECT_CONTAINS(error_of([&] { diversity(sizes); }), "scale 1");
  StreamOutputs images;
  images.tokens = {{{1}}, {{2}}};
  images.images = {{0, 0, 0}, {0, 0}};
  EXPECT_CONTAINS(error_of([&] { diversity(images); }), "image 1");
  StreamOutputs count;
  count.tokens = {{{1}}, {{2}}};
  count.images = {{0, 0, 0}};
  EXPECT_CONTAINS(error_of([&] { diversity(count); }), "1 images for 2 token streams");
  StreamOutputs nan = images;
  nan.images = {{0, 0}, {0, NAN}};
  EXPECT_CONTAINS(error_of([&] { diversity(nan); }), "not finite");
}

// ---------------------------------------------------------------- sanity checks

// Deterministic outputs: stream s draws from seed base + s; with same_seed all
// streams use `base`.
StreamOutputs make_outputs(int P, uint64_t base, bool same_seed) {
  StreamOutputs out;
  for (int s = 0; s < P; ++s) {
    uint64_t x = (same_seed ? base : base + s) * 0x9E3779B97F4A7C15ull + 1;
    auto next = [&] {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      return x;
    };
    TokenMaps t;
    for (int pn : {1, 2, 3}) {
      std::vector<int32_t> scale;
      for (int i = 0; i < pn * pn; ++i) scale.push_back(static_cast<int32_t>(next() % 5));
      t.push_back(scale);
    }
    std::vector<float> img;
    for (int i = 0; i < 12; ++i) img.push_back(static_cast<float>(next() % 1000) / 999.0f);
    out.tokens.push_back(t);
    out.images.push_back(img);
  }
  return out;
}

void set_samples(RunResult& r, std::vector<double> samples) {
  r.latency_samples_ms = std::move(samples);
  r.latency_ms = latency_stats(r.latency_samples_ms);
  r.images_per_s = r.streams / (r.latency_ms.median / 1000.0);
  r.ms_per_stream = r.latency_ms.median / r.streams;
}

void set_median(RunResult& r, double m) { set_samples(r, {0.98 * m, 0.99 * m, m, 1.01 * m, 1.02 * m}); }

RunResult make_run(const std::string& schedule, int P, double median_ms) {
  RunResult r;
  r.schedule = schedule;
  r.streams = P;
  set_median(r, median_ms);
  const bool batched = schedule == "batched";
  const int rows = batched ? P : 1;  // streams held at once
  r.planned = PlannedMemory{100 * kMiB, rows * 10 * kMiB, rows * 5 * kMiB};
  r.peak_memory_bytes = r.planned.total() + 8 * kMiB;
  r.kv_bytes_per_stream = 10 * kMiB;
  r.backbone_passes_per_scale.assign(3, batched ? 1 : P);
  r.rows_per_pass.assign(3, batched ? 2 * P : 2);
  r.stages_ms = {{"transformer", 0.6 * median_ms}, {"sampling", 0.05 * median_ms}, {"decode", 0.3 * median_ms}};
  r.outputs = make_outputs(P, 1000, false);
  r.control_outputs = make_outputs(P, 77, true);
  r.diversity = diversity(r.outputs);
  r.control_diversity = diversity(r.control_outputs);
  return r;
}

// Plausible: batched cost grows slowly with P, sequential linearly; the plan
// grows with P only when batched, and the measured peak follows it.
std::vector<RunResult> clean_set() {
  return {make_run("batched", 1, 100),    make_run("batched", 2, 120),    make_run("batched", 4, 160),
          make_run("sequential", 1, 100), make_run("sequential", 2, 200), make_run("sequential", 4, 400)};
}

RunResult& run_of(std::vector<RunResult>& runs, const std::string& schedule, int P) {
  for (RunResult& r : runs) {
    if (r.schedule == schedule && r.streams == P) return r;
  }
  throw std::logic_error("no such run");
}

// Every flag as "schedule/P:name".
std::multiset<std::string> flags_of(std::vector<RunResult>& runs, const SanityThresholds& t = {}) {
  apply_sanity_checks(runs, t);
  std::multiset<std::string> out;
  for (const RunResult& r : runs) {
    for (const Flag& f : r.flags) {
      out.insert(r.schedule + "/" + std::to_string(r.streams) + ":" + f.name);
      EXPECT_FALSE(f.reason.empty()) << f.name;
    }
  }
  return out;
}

std::string reason_of(const std::vector<RunResult>& runs, const std::string& name) {
  for (const RunResult& r : runs) {
    for (const Flag& f : r.flags) {
      if (f.name == name) return f.reason;
    }
  }
  return "";
}

using Flags = std::multiset<std::string>;

TEST(BenchSanity, CleanSetRaisesNoFlags) {
  auto runs = clean_set();
  EXPECT_EQ(flags_of(runs), Flags{});
}

TEST(BenchSanity, RepeatedChecksDoNotDuplicateFlagsAndKeepOthers) {
  auto runs = clean_set();
  set_median(run_of(runs, "batched", 2), 50);
  run_of(runs, "batched", 2).flags.push_back({"runner_note", "kept"});
  apply_sanity_checks(runs);
  const Flags once = flags_of(runs);
  EXPECT_EQ(once.count("batched/2:latency_below_single_stream"), 1u);
  EXPECT_EQ(once.count("batched/2:runner_note"), 1u);
}

TEST(BenchSanity, SequentialLoopLabelledBatched) {
  auto runs = clean_set();
  RunResult& r = run_of(runs, "batched", 4);
  r.backbone_passes_per_scale = {4, 4, 4};
  r.rows_per_pass = {2, 2, 2};
  EXPECT_EQ(flags_of(runs), Flags{"batched/4:passes_per_scale_not_one"});
  EXPECT_CONTAINS(reason_of(runs, "passes_per_scale_not_one"), "4 backbone passes");
}

TEST(BenchSanity, MissingOrShortPassCounters) {
  auto runs = clean_set();
  run_of(runs, "batched", 2).backbone_passes_per_scale.clear();
  run_of(runs, "sequential", 2).backbone_passes_per_scale = {2, 2};  // outputs have 3 scales
  EXPECT_EQ(flags_of(runs), (Flags{"batched/2:passes_per_scale_not_one", "sequential/2:passes_per_scale_not_streams"}));
}

TEST(BenchSanity, SequentialWithOnePassPerScale) {
  auto runs = clean_set();
  run_of(runs, "sequential", 4).backbone_passes_per_scale = {1, 1, 1};
  EXPECT_EQ(flags_of(runs), Flags{"sequential/4:passes_per_scale_not_streams"});
}

TEST(BenchSanity, LatencyBelowSingleStream) {
  auto runs = clean_set();
  set_median(run_of(runs, "batched", 2), 90);
  set_median(run_of(runs, "sequential", 2), 150);  // keeps the speed-up below P
  EXPECT_EQ(flags_of(runs), Flags{"batched/2:latency_below_single_stream"});
  const std::string why = reason_of(runs, "latency_below_single_stream");
  EXPECT_CONTAINS(why, "90 ms");
  EXPECT_CONTAINS(why, "100 ms");
}

TEST(BenchSanity, LatencyBelowSingleStreamWithinNoiseIsNotFlagged) {
  auto runs = clean_set();
  set_median(run_of(runs, "batched", 2), 96);  // 4% below, noise 5%
  EXPECT_EQ(flags_of(runs), Flags{});

  // The one-stream run's own spread (0.192) widens the allowance beyond 5%.
  runs = clean_set();
  set_samples(run_of(runs, "batched", 1), {88, 94, 100, 106, 112});
  set_median(run_of(runs, "sequential", 2), 150);
  set_median(run_of(runs, "batched", 2), 85);
  EXPECT_EQ(flags_of(runs), Flags{});
  set_median(run_of(runs, "batched", 2), 80);
  EXPECT_EQ(flags_of(runs), Flags{"batched/2:latency_below_single_stream"});
}

TEST(BenchSanity, SpeedupAboveStreams) {
  auto runs = clean_set();
  set_median(run_of(runs, "sequential", 4), 500);
  set_median(run_of(runs, "batched", 4), 110);  // 500 / 110 = 4.55 > 4 · 1.05
  EXPECT_EQ(flags_of(runs), Flags{"batched/4:speedup_above_streams"});
  EXPECT_CONTAINS(reason_of(runs, "speedup_above_streams"), "4.54545");

  runs = clean_set();
  set_median(run_of(runs, "sequential", 4), 500);
  set_median(run_of(runs, "batched", 4), 120);  // 4.17 is within noise
  EXPECT_EQ(flags_of(runs), Flags{});
}

TEST(BenchSanity, MemoryFlat) {
  auto runs = clean_set();
  RunResult& four = run_of(runs, "batched", 4);
  four.peak_memory_bytes = run_of(runs, "batched", 1).peak_memory_bytes;  // plan grew by 45 MiB
  EXPECT_EQ(flags_of(runs), Flags{"batched/4:memory_flat"});
  EXPECT_CONTAINS(reason_of(runs, "memory_flat"), "45 MiB");

  four.peak_memory_bytes = run_of(runs, "batched", 1).peak_memory_bytes - kMiB;  // shrinks
  EXPECT_EQ(flags_of(runs), Flags{"batched/4:memory_flat"});

  // 11 MiB of the planned 45 MiB growth is below 25%; 12 MiB is not.
  four.peak_memory_bytes = run_of(runs, "batched", 1).peak_memory_bytes + 11 * kMiB;
  EXPECT_EQ(flags_of(runs), Flags{"batched/4:memory_flat"});
  four.peak_memory_bytes = run_of(runs, "batched", 1).peak_memory_bytes + 12 * kMiB;
  EXPECT_EQ(flags_of(runs), Flags{});
}

TEST(BenchSanity, HardCodedDiversity) {
  auto runs = clean_set();
  RunResult& r = run_of(runs, "batched", 4);
  r.diversity = Diversity{6, {0.5, 0.5, 0.5}, 0.5, 0.1, 0.9};
  EXPECT_EQ(flags_of(runs), Flags{"batched/4:diversity_not_from_outputs"});
  EXPECT_CONTAINS(reason_of(runs, "diversity_not_from_outputs"), "token_disagreement reported 0.5");

  runs = clean_set();
  run_of(runs, "batched", 2).diversity.pixel_mad += 1e-6;  // tiny but real
  EXPECT_EQ(flags_of(runs), Flags{"batched/2:diversity_not_from_outputs"});
}

TEST(BenchSanity, OutputsWithWrongStreamCount) {
  auto runs = clean_set();
  RunResult& r = run_of(runs, "batched", 4);
  r.outputs = make_outputs(3, 1000, false);
  r.diversity = diversity(r.outputs);  // consistent, but of 3 streams
  EXPECT_EQ(flags_of(runs), Flags{"batched/4:diversity_not_from_outputs"});
  EXPECT_CONTAINS(reason_of(runs, "diversity_not_from_outputs"), "3 streams");

  runs = clean_set();  // outputs not kept at all
  run_of(runs, "sequential", 2).control_outputs = {};
  run_of(runs, "sequential", 2).control_diversity = {};
  EXPECT_EQ(flags_of(runs), Flags{"sequential/2:diversity_not_from_outputs"});
}

TEST(BenchSanity, InconsistentOutputsAreFlaggedNotThrown) {
  auto runs = clean_set();
  run_of(runs, "batched", 2).outputs.images.pop_back();
  EXPECT_EQ(flags_of(runs), Flags{"batched/2:diversity_not_from_outputs"});
  EXPECT_CONTAINS(reason_of(runs, "diversity_not_from_outputs"), "cannot be measured");
}

TEST(BenchSanity, NonZeroControlDiversity) {
  auto runs = clean_set();
  RunResult& r = run_of(runs, "batched", 4);
  r.control_outputs = make_outputs(4, 77, false);  // seeds not shared after all
  r.control_diversity = diversity(r.control_outputs);
  EXPECT_EQ(flags_of(runs), Flags{"batched/4:control_diversity_nonzero"});

  // Identical control streams but a reported non-zero figure: both flags.
  runs = clean_set();
  run_of(runs, "sequential", 2).control_diversity.pixel_mad = 0.01;
  EXPECT_EQ(flags_of(runs),
            (Flags{"sequential/2:control_diversity_nonzero", "sequential/2:diversity_not_from_outputs"}));

  // Cosine must be 1 for identical streams.
  runs = clean_set();
  run_of(runs, "batched", 2).control_diversity.cosine_similarity = 0.99;
  EXPECT_EQ(flags_of(runs).count("batched/2:control_diversity_nonzero"), 1u);
}

TEST(BenchSanity, HardCodedLatency) {
  auto runs = clean_set();
  RunResult& r = run_of(runs, "batched", 4);
  r.latency_ms.median = 130;  // not what the samples (median 160) give
  EXPECT_EQ(flags_of(runs), Flags{"batched/4:latency_not_from_samples"});
  EXPECT_CONTAINS(reason_of(runs, "latency_not_from_samples"), "160 ms");
}

TEST(BenchSanity, SpreadTooWide) {
  auto runs = clean_set();
  set_samples(run_of(runs, "batched", 2), {84, 108, 120, 132, 156});  // (p90 − p10) / median = 0.44
  EXPECT_EQ(flags_of(runs), Flags{"batched/2:spread_too_wide"});
  EXPECT_CONTAINS(reason_of(runs, "spread_too_wide"), "threshold 0.25");

  SanityThresholds loose;
  loose.max_relative_spread = 0.5;
  EXPECT_EQ(flags_of(runs, loose), Flags{});
}

TEST(BenchSanity, TooFewRepeats) {
  auto runs = clean_set();
  set_samples(run_of(runs, "sequential", 4), {398, 402});
  EXPECT_EQ(flags_of(runs), Flags{"sequential/4:too_few_repeats"});
  EXPECT_CONTAINS(reason_of(runs, "too_few_repeats"), "2 latency samples");
}

TEST(BenchSanity, RejectsUnknownScheduleAndDuplicateRuns) {
  auto runs = clean_set();
  runs[0].schedule = "parallel";
  EXPECT_CONTAINS(error_of([&] { apply_sanity_checks(runs); }), "unknown schedule 'parallel'");
  runs = clean_set();
  runs.push_back(make_run("batched", 2, 120));
  EXPECT_CONTAINS(error_of([&] { apply_sanity_checks(runs); }), "two runs of batched P=2");
}

// ---------------------------------------------------------------- reports

Report make_report() {
  Report rep;
  rep.machine = {{"backend", "cpu"}, {"dtype", "f32"}, {"threads", "2"}, {"cpu", "AMD EPYC"}};
  rep.model = {{"preset", "tiny"}, {"cfg", "4"}, {"top_k", "900"}};
  rep.runs = clean_set();
  set_median(run_of(rep.runs, "batched", 4), 90);  // below the one-stream figure
  set_median(run_of(rep.runs, "sequential", 4), 300);
  apply_sanity_checks(rep.runs, rep.thresholds);
  return rep;
}

TEST(BenchReport, JsonParsesBackWithTheFigures) {
  const Report rep = make_report();
  const auto j = nlohmann::json::parse(report_json(rep));
  EXPECT_EQ(j["machine"]["backend"], "cpu");
  EXPECT_EQ(j["model"]["preset"], "tiny");
  EXPECT_DOUBLE_EQ(j["thresholds"]["max_relative_spread"].get<double>(), 0.25);
  ASSERT_EQ(j["runs"].size(), 6u);
  const auto& b4 = j["runs"][2];
  EXPECT_EQ(b4["schedule"], "batched");
  EXPECT_EQ(b4["streams"], 4);
  EXPECT_DOUBLE_EQ(b4["latency_ms"]["median"].get<double>(), 90.0);
  EXPECT_DOUBLE_EQ(b4["latency_ms"]["p10"].get<double>(), rep.runs[2].latency_ms.p10);
  EXPECT_DOUBLE_EQ(b4["latency_ms"]["p90"].get<double>(), rep.runs[2].latency_ms.p90);
  EXPECT_DOUBLE_EQ(b4["latency_ms"]["min"].get<double>(), 0.98 * 90);
  EXPECT_DOUBLE_EQ(b4["latency_ms"]["max"].get<double>(), 1.02 * 90);
  EXPECT_EQ(b4["latency_samples_ms"].size(), 5u);
  EXPECT_DOUBLE_EQ(b4["images_per_s"].get<double>(), 4 / 0.09);
  EXPECT_DOUBLE_EQ(b4["ms_per_stream"].get<double>(), 22.5);
  EXPECT_EQ(b4["peak_memory_bytes"].get<uint64_t>(), rep.runs[2].peak_memory_bytes);
  EXPECT_EQ(b4["planned_memory_bytes"]["weights"].get<uint64_t>(), 100 * kMiB);
  EXPECT_EQ(b4["planned_memory_bytes"]["kv_cache"].get<uint64_t>(), 40 * kMiB);
  EXPECT_EQ(b4["planned_memory_bytes"]["activations"].get<uint64_t>(), 20 * kMiB);
  EXPECT_EQ(b4["planned_memory_bytes"]["total"].get<uint64_t>(), 160 * kMiB);
  EXPECT_EQ(b4["kv_bytes_per_stream"].get<uint64_t>(), 10 * kMiB);
  EXPECT_EQ(b4["backbone_passes_per_scale"], nlohmann::json::array({1, 1, 1}));
  EXPECT_EQ(b4["rows_per_pass"], nlohmann::json::array({8, 8, 8}));
  EXPECT_EQ(b4["diversity"]["pairs"], 6);
  EXPECT_DOUBLE_EQ(b4["diversity"]["token_disagreement"].get<double>(), rep.runs[2].diversity.token_disagreement);
  EXPECT_GT(b4["diversity"]["token_disagreement"].get<double>(), 0.0);
  EXPECT_EQ(b4["diversity"]["token_disagreement_per_scale"].size(), 3u);
  EXPECT_DOUBLE_EQ(b4["diversity"]["pixel_mad"].get<double>(), rep.runs[2].diversity.pixel_mad);
  EXPECT_DOUBLE_EQ(b4["diversity"]["cosine_similarity"].get<double>(), rep.runs[2].diversity.cosine_similarity);
  EXPECT_EQ(b4["control_diversity"]["token_disagreement"].get<double>(), 0.0);
  EXPECT_NEAR(b4["control_diversity"]["cosine_similarity"].get<double>(), 1.0, 1e-12);
  EXPECT_DOUBLE_EQ(b4["stages_ms"]["decode"].get<double>(), 0.3 * 160);
  ASSERT_EQ(b4["flags"].size(), 1u);
  EXPECT_EQ(b4["flags"][0]["name"], "latency_below_single_stream");
  EXPECT_EQ(b4["flags"][0]["reason"], rep.runs[2].flags[0].reason);
  EXPECT_TRUE(j["runs"][0]["flags"].empty());
  EXPECT_FALSE(b4.contains("outputs"));
  EXPECT_FALSE(b4.contains("control_outputs"));
}

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// Fields of one CSV line (RFC 4180 quoting).
std::vector<std::string> csv_fields(const std::string& line) {
  std::vector<std::string> out(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        out.back() += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        out.back() += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      out.emplace_back();
    } else {
      out.back() += c;
    }
  }
  return out;
}

TEST(BenchReport, AchievedRatesAreTheWorkOverTheMedianStageTimes) {
  RequestWork work;
  work.transformer = {{2e9, 1e8}, {6e9, 3e8}};  // 8 GFLOP, 400 MB over two scales
  work.decode = {1e9, 5e8};
  const auto rates = stage_rates(
      work, {{"transformer", 4.0}, {"transformer_s0", 1.0}, {"transformer_s1", 3.0}, {"decode", 2.0}, {"sampling", 1.0}});
  ASSERT_EQ(rates.size(), 4u) << "the transformer, each of its scales, the decoder";
  EXPECT_DOUBLE_EQ(rates.at("transformer").tflop_per_s(), 2.0);  // 8e9 / 4 ms
  EXPECT_DOUBLE_EQ(rates.at("transformer_s0").tflop_per_s(), 2.0);  // 2e9 / 1 ms
  EXPECT_DOUBLE_EQ(rates.at("transformer_s1").gb_per_s(), 100.0);   // 3e8 / 3 ms
  EXPECT_DOUBLE_EQ(rates.at("transformer").gb_per_s(), 100.0);    // 4e8 / 4 ms
  EXPECT_DOUBLE_EQ(rates.at("decode").tflop_per_s(), 0.5);
  EXPECT_DOUBLE_EQ(rates.at("decode").gb_per_s(), 250.0);
  EXPECT_DOUBLE_EQ(stage_rates(work, {}).at("decode").tflop_per_s(), 0.0) << "no time, no rate";

  Report rep = make_report();
  rep.runs[0].work = work;
  rep.runs[0].stages_ms = {{"transformer", 4.0}, {"transformer_s0", 1.0}, {"transformer_s1", 3.0}, {"decode", 2.0}};
  rep.peaks = {4.0, 1000.0};
  const auto j = nlohmann::json::parse(report_json(rep));
  EXPECT_DOUBLE_EQ(j["hardware_peaks"]["tflop_per_s"].get<double>(), 4.0);
  const auto& t = j["runs"][0]["work"]["transformer"];
  EXPECT_DOUBLE_EQ(t["flops"].get<double>(), 8e9);
  EXPECT_DOUBLE_EQ(t["median_ms"].get<double>(), 4.0);
  EXPECT_DOUBLE_EQ(t["tflop_per_s"].get<double>(), 2.0);
  EXPECT_DOUBLE_EQ(t["fraction_of_peak_flops"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(t["fraction_of_peak_bandwidth"].get<double>(), 0.1);
  const std::string md = report_markdown(rep);
  EXPECT_NE(md.find("## Achieved rates"), std::string::npos);
  EXPECT_NE(md.find("| batched | 1 | 2.000 (50.0 %) | 100.000 (10.0 %) | 0.500 (12.5 %) | 250.000 (25.0 %) |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| 2 | 2.000 · 100.0 |"), std::string::npos) << "scale 2 of the first run:\n" << md;
  EXPECT_DOUBLE_EQ(j["runs"][0]["work"]["transformer_s1"]["tflop_per_s"].get<double>(), 2.0);
}

TEST(BenchReport, CsvHasHeaderAndOneLinePerRun) {
  Report rep = make_report();
  rep.runs[5].schedule = "odd, \"name\"";  // must be quoted
  const auto lines = lines_of(report_csv(rep));
  ASSERT_EQ(lines.size(), 7u);
  const auto header = csv_fields(lines[0]);
  EXPECT_EQ(header.front(), "schedule");
  EXPECT_EQ(header.back(), "flags");
  for (size_t i = 1; i < lines.size(); ++i) EXPECT_EQ(csv_fields(lines[i]).size(), header.size()) << lines[i];
  auto column = [&](const std::string& name) {
    for (size_t i = 0; i < header.size(); ++i) {
      if (header[i] == name) return i;
    }
    ADD_FAILURE() << "no column " << name;
    return size_t{0};
  };
  const auto b4 = csv_fields(lines[3]);
  EXPECT_EQ(b4[column("schedule")], "batched");
  EXPECT_EQ(b4[column("streams")], "4");
  EXPECT_EQ(b4[column("median_ms")], "90");
  EXPECT_EQ(b4[column("planned_total_bytes")], std::to_string(160 * kMiB));
  EXPECT_EQ(b4[column("backbone_passes_per_scale")], "1;1;1");
  EXPECT_EQ(b4[column("rows_per_pass")], "8;8;8");
  EXPECT_EQ(b4[column("control_token_disagreement")], "0");
  EXPECT_EQ(b4[column("flags")], "latency_below_single_stream");
  EXPECT_EQ(std::stod(b4[column("pixel_mad")]), rep.runs[2].diversity.pixel_mad);  // round trip
  EXPECT_EQ(csv_fields(lines[6])[0], "odd, \"name\"");
}

TEST(BenchReport, MarkdownHasTablesThresholdsAndFlagReasons) {
  const Report rep = make_report();
  const std::string md = report_markdown(rep);
  EXPECT_CONTAINS(md, "| schedule | P | median ms [p10–p90] | images/s | ms/stream | peak MiB | arrays MiB | plan MiB (w/kv/act) |");
  EXPECT_CONTAINS(md, "| batched | 4 | 90.00 [");
  EXPECT_CONTAINS(md, "| decode |");                       // stages table
  EXPECT_CONTAINS(md, "- backend: cpu");                   // machine
  EXPECT_CONTAINS(md, "- preset: tiny");                   // model
  EXPECT_CONTAINS(md, "exceeds 0.25");                     // threshold
  EXPECT_CONTAINS(md, "`latency_below_single_stream`");    // flag list
  EXPECT_CONTAINS(md, rep.runs[2].flags[0].reason);
  EXPECT_EQ(md.find("no flags"), std::string::npos);

  Report clean = rep;
  clean.runs = clean_set();
  apply_sanity_checks(clean.runs);
  EXPECT_CONTAINS(report_markdown(clean), "no flags");
}

// A minimal well-formedness check: tags balance, attributes' quotes pair up,
// every & starts an entity, and the document is one <svg> element.
::testing::AssertionResult xml_ok(const std::string& s) {
  if (s.rfind("<svg", 0) != 0) return ::testing::AssertionFailure() << "does not start with <svg";
  std::vector<std::string> open;
  size_t i = 0;
  bool closed_root = false;
  while ((i = s.find('<', i)) != std::string::npos) {
    if (closed_root) return ::testing::AssertionFailure() << "content after </svg>";
    const size_t j = s.find('>', i);
    if (j == std::string::npos) return ::testing::AssertionFailure() << "unterminated tag at " << i;
    std::string tag = s.substr(i + 1, j - i - 1);
    if (tag.find('<') != std::string::npos) return ::testing::AssertionFailure() << "'<' inside tag at " << i;
    if (std::count(tag.begin(), tag.end(), '"') % 2) return ::testing::AssertionFailure() << "odd quotes: " << tag;
    if (tag.empty()) return ::testing::AssertionFailure() << "empty tag";
    if (tag[0] == '/') {
      const std::string name = tag.substr(1);
      if (open.empty() || open.back() != name) return ::testing::AssertionFailure() << "unbalanced </" << name << ">";
      open.pop_back();
      closed_root = open.empty();
    } else if (tag.back() != '/') {
      open.push_back(tag.substr(0, tag.find_first_of(" \n\t")));
    }
    i = j + 1;
  }
  if (!open.empty()) return ::testing::AssertionFailure() << "unclosed <" << open.back() << ">";
  for (size_t a = s.find('&'); a != std::string::npos; a = s.find('&', a + 1)) {
    bool entity = false;
    for (const char* e : {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"}) entity = entity || s.compare(a, std::strlen(e), e) == 0;
    if (!entity) return ::testing::AssertionFailure() << "bare & at " << a;
  }
  return ::testing::AssertionSuccess();
}

TEST(BenchReport, SvgIsWellFormedWithBothSchedules) {
  const std::string svg = report_svg(make_report());
  EXPECT_TRUE(xml_ok(svg));
  EXPECT_CONTAINS(svg, ">batched</text>");
  EXPECT_CONTAINS(svg, ">sequential</text>");
  EXPECT_CONTAINS(svg, "stroke-dasharray");  // planned memory
  EXPECT_CONTAINS(svg, ">4</text>");          // a P tick label
  EXPECT_EQ(svg.find("nan"), std::string::npos);
  EXPECT_EQ(svg.find("inf"), std::string::npos);
}

TEST(BenchReport, SvgEscapesTextAndHandlesOneRunAndZeros) {
  Report rep;
  RunResult r;
  r.schedule = "a<b & \"c\"";
  r.streams = 1;
  rep.runs = {r};
  const std::string svg = report_svg(rep);
  EXPECT_TRUE(xml_ok(svg));
  EXPECT_CONTAINS(svg, "a&lt;b &amp; &quot;c&quot;");
  EXPECT_EQ(svg.find("nan"), std::string::npos);
  EXPECT_EQ(svg.find("inf"), std::string::npos);
  EXPECT_TRUE(xml_ok(report_svg(Report{})));
}

TEST(BenchReport, WriteReportWritesTheFourFiles) {
  test::TempDir tmp;
  const Report rep = make_report();
  const auto dir = tmp / "out" / "nested";
  write_report(dir, rep);
  EXPECT_EQ(test::read_bytes(dir / "bench.json"), report_json(rep));
  EXPECT_EQ(test::read_bytes(dir / "bench.csv"), report_csv(rep));
  EXPECT_EQ(test::read_bytes(dir / "bench.md"), report_markdown(rep));
  EXPECT_EQ(test::read_bytes(dir / "bench.svg"), report_svg(rep));
}

TEST(BenchReport, WriteReportNamesWhatItCannotWrite) {
  test::TempDir tmp;
  const Report rep = make_report();
  test::write_bytes(tmp / "plain", "x");
  // A directory under a regular file cannot be created, even by root.
  const std::string e1 = error_of([&] { write_report(tmp / "plain" / "sub", rep); });
  EXPECT_CONTAINS(e1, "cannot create report directory");
  EXPECT_CONTAINS(e1, (tmp / "plain" / "sub").string());
  EXPECT_CONTAINS(error_of([&] { write_report(tmp / "plain", rep); }), (tmp / "plain").string());
  // A directory where bench.svg should go.
  std::filesystem::create_directories(tmp / "out" / "bench.svg");
  EXPECT_CONTAINS(error_of([&] { write_report(tmp / "out", rep); }), (tmp / "out" / "bench.svg").string());
}

}  // namespace
}  // namespace varps::bench
