#pragma once
// Requests from many clients as the streams of batched generations. A
// request waits in the queue until the worker takes it: every request
// waiting then joins, up to max_batch images in flight, and when nothing is
// running the first one waits at most max_wait for company. With
// Joining::NextScale the worker takes requests at every scale boundary of
// what is running (RollingBatch), with Joining::NextBatch only when the
// running batch has finished. Each request's image depends only on its own
// class, seed and sampling (batch invariance), so it is the image a request
// alone would get. A request its client gave up on is withdrawn: it leaves
// the queue at once, and a cohort all of whose requests were withdrawn
// leaves the running batch at the next scale boundary.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_set>
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
  // Withdrawn requests that had started: those whose cohort was stopped at
  // a scale boundary, and those generated to the end beside requests of
  // their cohort that were not withdrawn, their images thrown away.
  int64_t images_stopped = 0;
  int64_t images_discarded = 0;
  int64_t cohorts_stopped = 0;
};

// A submitted request: its id, for withdraw(), and its result to come.
struct Ticket {
  uint64_t id = 0;
  std::future<ImageResult> result;
};

// Where a withdrawn request was.
enum class Withdrawal {
  Queued,   // it left the queue and will not run
  Running,  // its cohort leaves at the next scale boundary if no request of it remains, else runs on
  Finished  // its result is ready (or already taken): nothing was withdrawn
};

class BatchQueue {
 public:
  BatchQueue(const Pipeline& pipe, BatchQueueOptions opts);
  ~BatchQueue();  // finishes the queued requests, then stops the worker
  BatchQueue(const BatchQueue&) = delete;
  BatchQueue& operator=(const BatchQueue&) = delete;

  // nullopt when the queue is full (or closing).
  std::optional<Ticket> submit(const ImageRequest& request);
  // Gives up on a submitted request. Its ticket's result is then not to be
  // waited for: a broken promise, or an image no one reads.
  Withdrawal withdraw(uint64_t id);
  BatchQueueStats stats() const;
  // Stops taking requests; those queued still run. Returns once they have.
  void drain();

 private:
  struct Pending {
    uint64_t id;
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
  // When every request of a running batch was withdrawn: forgets them,
  // counts them as stopped and returns true. Under mutex_.
  bool stop_if_all_withdrawn(const std::vector<Pending>& batch);

  const Pipeline& pipe_;
  BatchQueueOptions opts_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Pending> queue_;
  std::unordered_set<uint64_t> running_;    // taken by the worker, not yet answered
  std::unordered_set<uint64_t> withdrawn_;  // of those, the ones withdrawn
  uint64_t next_id_ = 1;
  bool closing_ = false;
  BatchQueueStats stats_;
  std::thread worker_;
};

}  // namespace varps::serve
