#pragma once
#include <cstdint>
#include <string>

namespace varps {

// A backend's memory as its allocator sees it, for benchmark reports and
// plan checks. `available` says the figures are a device's: the CPU backend
// counts its arrays too (in_use, peak), but a process's memory is its RSS,
// which is what the CPU bench reports.
struct DeviceMemoryStats {
  bool available = false;
  uint64_t in_use = 0;    // bytes held by live arrays now
  uint64_t peak = 0;      // most bytes held at once since the last reset
  uint64_t reserved = 0;  // bytes the allocator holds from the driver (in use + cached); device only
  uint64_t total = 0;     // the device's memory; device only
};

// "1.5 GiB": binary units with one decimal; below 1 KiB the exact "512 B".
std::string bytes_text(uint64_t bytes);

}  // namespace varps
