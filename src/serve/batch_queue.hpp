#pragma once
// Requests from many clients as the streams of batched generations. A
// request waits in the queue until the worker takes it: every request
// waiting then joins, up to max_batch images in flight, and when nothing is
// running the first one waits at most max_wait for company. With
// Joining::NextScale the worker takes requests at every scale boundary of
// what is running (RollingBatch), with Joining::NextBatch only when the
// running batch has finished. Each request's image depends only on its own
// class, seed and sampling (batch invariance), so it is the image a request
// alone would get.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "varps/pipeline.hpp"
#include "varps/rolling_batch.hpp"

namespace varps::serve {

// When a request that arrives while a batch runs joins.
enum class Joining { NextScale, NextBatch };

struct BatchQueueOptions {
  int max_batch = 16;                     // images in flight
  std::chrono::milliseconds max_wait{5};  // how long the first request waits for others
  int max_queue = 256;                    // waiting requests; more are refused
  Joining joining = Joining::NextScale;
  FastModes fast;  // every request's
};

// One request's result: its image [3, H, W] in [0, 1], tokens, and what the
// pass it ran in looked like.
struct ImageResult {
  int64_t height = 0, width = 0;
  std::vector<float> pixels;
  TokenMaps tokens;
  int batch_images = 0;  // the most images any of its passes held
  std::string error;     // non-empty when the pass failed
};

// What the worker did, for /metrics.
struct BatchQueueStats {
  int64_t passes = 0;           // batched generations run (cohorts, joining at scale boundaries)
  int64_t backbone_passes = 0;  // transformer passes: one per step, whatever scales it held
  int64_t images = 0;
  int64_t queue_depth = 0;
};

class BatchQueue {
 public:
  BatchQueue(const Pipeline& pipe, BatchQueueOptions opts);
  ~BatchQueue();  // finishes the queued requests, then stops the worker
  BatchQueue(const BatchQueue&) = delete;
  BatchQueue& operator=(const BatchQueue&) = delete;

  // nullopt when the queue is full (or closing).
  std::optional<std::future<ImageResult>> submit(const ImageRequest& request);
  BatchQueueStats stats() const;
  // Stops taking requests; those queued still run. Returns once they have.
  void drain();

 private:
  struct Pending {
    ImageRequest request;
    std::promise<ImageResult> result;
  };
  void work_by_batch();
  void work_by_scale();
  // Waits for requests (and, when nothing runs, for company), and takes up
  // to `room` of them; empty once closing with nothing queued.
  std::vector<Pending> take(int64_t room, bool running);
  void answer(std::vector<Pending>& batch, const GeneratedImages& g, int64_t batch_images);
  void fail(std::vector<Pending>& batch, const std::string& error);

  const Pipeline& pipe_;
  BatchQueueOptions opts_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Pending> queue_;
  bool closing_ = false;
  BatchQueueStats stats_;
  std::thread worker_;
};

}  // namespace varps::serve
