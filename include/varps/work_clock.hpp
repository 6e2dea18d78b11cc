#pragma once
#include <memory>
#include <string>
#include <vector>

namespace varps {

// Timestamps in a backend's order of work. mark() notes the moment the work
// enqueued so far is done: at once on the CPU (its ops finish before they
// return), as an event recorded on the stream on a device. So the intervals
// time the device's work without the host waiting for it in between.
class WorkClock {
 public:
  virtual ~WorkClock() = default;
  virtual void mark() = 0;
  // Milliseconds between consecutive marks (one fewer than marks); waits
  // for the device to pass the last mark.
  virtual std::vector<double> intervals_ms() = 0;
  // What the marks are, for benchmark reports.
  virtual std::string kind() const = 0;
};

// The host's steady clock: right for a backend whose ops are synchronous.
std::unique_ptr<WorkClock> make_host_clock();

}  // namespace varps
