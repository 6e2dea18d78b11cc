#pragma once
#include <cstdint>

namespace varps {

// Device memory as a backend's allocator sees it, for benchmark reports.
// `available` is false for the CPU backend (its memory is the process RSS).
struct DeviceMemoryStats {
  bool available = false;
  uint64_t in_use = 0;    // bytes held by live arrays now
  uint64_t peak = 0;      // most bytes held at once since the last reset
  uint64_t reserved = 0;  // bytes the allocator holds from the driver (in use + cached)
  uint64_t total = 0;     // the device's memory
};

}  // namespace varps
