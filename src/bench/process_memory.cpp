// Peak resident memory of this process, from /proc (Linux). Writing "5" to
// /proc/self/clear_refs resets VmHWM, so each benchmark run gets its own peak.
#include <fstream>
#include <string>

#include "varps/bench_runner.hpp"

namespace varps::bench {

uint64_t peak_rss_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;  // "VmHWM:   1234 kB"
  }
  return 0;
}

bool reset_peak_rss() {
  std::ofstream clear("/proc/self/clear_refs");
  if (!clear) return false;
  clear << "5";
  clear.flush();
  return static_cast<bool>(clear);
}

const char* schedule_name(Schedule s) { return s == Schedule::Batched ? "batched" : "sequential"; }

}  // namespace varps::bench
