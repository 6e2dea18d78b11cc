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
  // A request given up on, by why ("disconnect", "deadline") and where it
  // was (queued or running; a finished one is not given up on).
  void record_withdrawn(const std::string& reason, Withdrawal where);
  // A connection answered 503 because the server had as many as it serves.
  void record_over_limit();
  // varps_requests_total{code}, varps_requests_withdrawn_total{reason,
  // stage}, varps_connections_over_limit_total, varps_images_total,
  // varps_images_stopped_total, varps_images_discarded_total,
  // varps_cohorts_stopped_total, varps_backbone_passes_total,
  // varps_batches_total, varps_queue_depth and the histogram
  // varps_request_seconds (generations only).
  std::string render(const BatchQueueStats& queue) const;

 private:
  mutable std::mutex mutex_;
  std::map<int, int64_t> requests_;
  std::map<std::pair<std::string, std::string>, int64_t> withdrawn_;  // by reason, stage
  int64_t over_limit_ = 0;
  static const std::vector<double> kBuckets;
  std::vector<int64_t> bucket_counts_ = std::vector<int64_t>(kBuckets.size(), 0);
  int64_t count_ = 0;
  double sum_ = 0;
};

}  // namespace varps::serve
