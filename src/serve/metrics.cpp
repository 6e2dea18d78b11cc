#include "serve/metrics.hpp"

#include <cstdio>

namespace varps::serve {

const std::vector<double> ServerMetrics::kBuckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                     1,     2.5,  5,     10,   30,  60,   120};

void ServerMetrics::record_code(int code) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++requests_[code];
}

void ServerMetrics::record_latency(double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++count_;
  sum_ += seconds;
  for (size_t i = 0; i < kBuckets.size(); ++i)
    if (seconds <= kBuckets[i]) ++bucket_counts_[i];
}

void ServerMetrics::record_withdrawn(const std::string& reason, Withdrawal where) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++withdrawn_[{reason, where == Withdrawal::Queued ? "queued" : "running"}];
}

void ServerMetrics::record_over_limit() {
  std::lock_guard<std::mutex> lock(mutex_);
  ++over_limit_;
}

std::string ServerMetrics::render(const BatchQueueStats& q) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string s;
  char line[160];
  s += "# HELP varps_requests_total HTTP requests answered, by status code.\n# TYPE varps_requests_total counter\n";
  for (const auto& [code, n] : requests_) {
    std::snprintf(line, sizeof line, "varps_requests_total{code=\"%d\"} %lld\n", code, static_cast<long long>(n));
    s += line;
  }
  s += "# HELP varps_requests_withdrawn_total Generations given up on: the client went away, or the deadline "
       "passed.\n# TYPE varps_requests_withdrawn_total counter\n";
  for (const auto& [key, n] : withdrawn_)
    s += "varps_requests_withdrawn_total{reason=\"" + key.first + "\",stage=\"" + key.second + "\"} " +
         std::to_string(n) + "\n";
  const auto counter = [&](const std::string& name, const std::string& help, const std::string& type, long long v) {
    s += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + name + " " + std::to_string(v) + "\n";
  };
  counter("varps_connections_over_limit_total", "Connections answered 503 because the server had --max-connections.",
          "counter", over_limit_);
  counter("varps_images_total", "Images generated.", "counter", q.images);
  counter("varps_images_stopped_total",
          "Images of withdrawn requests stopped at a scale boundary, their whole cohort withdrawn.", "counter",
          q.images_stopped);
  counter("varps_images_discarded_total",
          "Images of withdrawn requests generated to the end beside requests of their cohort, and thrown away.",
          "counter", q.images_discarded);
  counter("varps_cohorts_stopped_total", "Cohorts stopped at a scale boundary, every request of them withdrawn.",
          "counter", q.cohorts_stopped);
  counter("varps_backbone_passes_total",
          "Transformer passes: one per step, over the next scale of every cohort in flight.", "counter",
          q.backbone_passes);
  counter("varps_batches_total", "Batched generations (cohorts) run.", "counter", q.passes);
  counter("varps_queue_depth", "Requests waiting for a pass.", "gauge", q.queue_depth);
  s += "# HELP varps_request_seconds Latency of POST /v1/generate, arrival to answer.\n"
       "# TYPE varps_request_seconds histogram\n";
  for (size_t i = 0; i < kBuckets.size(); ++i) {
    std::snprintf(line, sizeof line, "varps_request_seconds_bucket{le=\"%g\"} %lld\n", kBuckets[i],
                  static_cast<long long>(bucket_counts_[i]));
    s += line;
  }
  std::snprintf(line, sizeof line, "varps_request_seconds_bucket{le=\"+Inf\"} %lld\nvarps_request_seconds_sum %.6f\n"
                "varps_request_seconds_count %lld\n", static_cast<long long>(count_), sum_,
                static_cast<long long>(count_));
  s += line;
  return s;
}

}  // namespace varps::serve
