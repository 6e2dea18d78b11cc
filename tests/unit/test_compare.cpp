// The ParScale-versus-larger-model comparison: each sanity flag planted in
// an otherwise clean set of measurements and caught, a clean set raising
// none, and the report files.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "varps/parscale_compare.hpp"

namespace varps::bench {
namespace {

CompareEntry entry(const std::string& label, int streams, uint64_t params, std::vector<double> samples,
                   uint64_t peak) {
  CompareEntry e;
  e.label = label;
  e.parscale_streams = streams;
  e.parameters = params;
  e.latency_samples_ms = std::move(samples);
  e.latency_ms = latency_stats(e.latency_samples_ms);
  e.peak_memory_bytes = peak;
  e.backbone_passes_per_scale = {1, 1, 1};
  e.rows_per_pass = std::vector<int64_t>(3, 2 * std::max(streams, 1));
  return e;
}

std::vector<CompareEntry> clean() {
  return {entry("d16", 0, 100, {100, 101, 102}, 1000), entry("d16 + ParScale P=1", 1, 101, {99, 100, 101}, 1001),
          entry("d16 + ParScale P=4", 4, 104, {300, 301, 302}, 1500), entry("d20", 0, 170, {160, 161, 162}, 1700)};
}

std::vector<std::string> flags_of(const CompareEntry& e) {
  std::vector<std::string> names;
  for (const Flag& f : e.flags) names.push_back(f.name);
  return names;
}

TEST(CompareChecks, CleanMeasurementsRaiseNoFlag) {
  auto entries = clean();
  apply_comparison_checks(entries);
  for (const auto& e : entries) EXPECT_TRUE(e.flags.empty()) << e.label << ": " << e.flags.front().reason;
}

TEST(CompareChecks, EachPlantedErrorIsCaught) {
  using Names = std::vector<std::string>;
  {
    auto v = clean();
    v[2] = entry("d16 + ParScale P=4", 4, 104, {50, 50, 50}, 1500);  // 4x the rows, half the time
    apply_comparison_checks(v);
    EXPECT_EQ(flags_of(v[2]), Names{"latency_below_base"});
  }
  {
    auto v = clean();
    v[1] = entry("d16 + ParScale P=1", 1, 101, {50, 50, 50}, 1001);  // P = 1 does no more work: no flag
    apply_comparison_checks(v);
    EXPECT_TRUE(v[1].flags.empty());
  }
  {
    auto v = clean();
    v[3].peak_memory_bytes = 900;  // larger weights, smaller peak
    apply_comparison_checks(v);
    EXPECT_EQ(flags_of(v[3]), Names{"memory_not_above_base"});
  }
  {
    auto v = clean();
    v[2].backbone_passes_per_scale = {1, 4, 1};  // a loop over streams
    apply_comparison_checks(v);
    EXPECT_EQ(flags_of(v[2]), Names{"passes_per_scale_not_one"});
    EXPECT_NE(v[2].flags[0].reason.find("scale 1 took 4"), std::string::npos) << v[2].flags[0].reason;
  }
  {
    auto v = clean();
    v[3] = entry("d20", 0, 170, {160, 161}, 1700);
    apply_comparison_checks(v);
    EXPECT_EQ(flags_of(v[3]), Names{"too_few_repeats"});
  }
  {
    auto v = clean();
    v[3] = entry("d20", 0, 170, {120, 160, 260}, 1700);
    apply_comparison_checks(v);
    EXPECT_EQ(flags_of(v[3]), Names{"spread_too_wide"});
  }
  {
    auto v = clean();
    v[3].latency_ms.median = 140;  // a figure that is not the samples' median
    apply_comparison_checks(v);
    EXPECT_EQ(flags_of(v[3]), Names{"latency_not_from_samples"});
  }
}

TEST(CompareReport, FilesHoldEveryRowAndFlag) {
  CompareReport r;
  r.machine = {{"cpu", "test"}};
  r.model = {{"base", "d16"}};
  r.entries = clean();
  r.entries[2].latency_increase = 2.0;
  r.entries[2].flags.push_back({"latency_below_base", "planted"});
  const std::string md = comparison_markdown(r);
  for (const auto& e : r.entries) EXPECT_NE(md.find("| " + e.label + " |"), std::string::npos) << e.label;
  EXPECT_NE(md.find("+200.0%"), std::string::npos) << md;
  EXPECT_NE(md.find("`latency_below_base`: planted"), std::string::npos) << md;
  EXPECT_NE(md.find("untrained"), std::string::npos);
  const std::string csv = comparison_csv(r);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 5);
  const auto doc = nlohmann::json::parse(comparison_json(r));
  ASSERT_EQ(doc["entries"].size(), 4u);
  EXPECT_EQ(doc["entries"][2]["parscale_streams"], 4);
  EXPECT_EQ(doc["entries"][2]["latency_samples_ms"].size(), 3u);
  EXPECT_EQ(doc["entries"][2]["flags"][0]["name"], "latency_below_base");
}

}  // namespace
}  // namespace varps::bench
