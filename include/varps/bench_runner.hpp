#pragma once
// Drives the engine for `varps bench`: for every (schedule, P) it runs one
// request of P streams after warm-up, several times, and records latency,
// stages, memory, counters and the outputs diversity is computed from.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "varps/bench.hpp"
#include "varps/pipeline.hpp"

namespace varps::bench {

struct BenchConfig : RunSettings {
  std::vector<Schedule> schedules = {Schedule::Batched, Schedule::Sequential};
  HardwarePeaks peaks;  // copied into the report
};

// Runs every (schedule, P) in order of P, each schedule in the given order,
// then applies the sanity checks. `machine` and `model` are copied into the
// report beside what the runner adds (threads, backend, memory method).
Report run_bench(const Pipeline& pipe, const BenchConfig& cfg, std::map<std::string, std::string> machine,
                 std::map<std::string, std::string> model);

// Process memory (Linux): the peak resident set since the last reset.
uint64_t peak_rss_bytes();
// Resets the peak to the current resident set; false when the kernel does
// not allow it (the peak is then the process's lifetime peak).
bool reset_peak_rss();

const char* schedule_name(Schedule s);  // "batched", "sequential"

}  // namespace varps::bench
