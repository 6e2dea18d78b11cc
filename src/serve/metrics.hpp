#pragma once
// The server's counters in the Prometheus text format (version 0.0.4).
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "serve/batch_queue.hpp"

namespace varps::serve {

class ServerMetrics {
 public:
  // One answered request, by status code.
  void record_code(int code);
  // The latency of one answered generation.
  void record_latency(double seconds);
  // varps_requests_total{code}, varps_images_total,
  // varps_backbone_passes_total, varps_batches_total, varps_queue_depth and
  // the histogram varps_request_seconds (generations only).
  std::string render(const BatchQueueStats& queue) const;

 private:
  mutable std::mutex mutex_;
  std::map<int, int64_t> requests_;
  static const std::vector<double> kBuckets;
  std::vector<int64_t> bucket_counts_ = std::vector<int64_t>(kBuckets.size(), 0);
  int64_t count_ = 0;
  double sum_ = 0;
};

}  // namespace varps::serve
