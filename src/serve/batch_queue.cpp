#include "serve/batch_queue.hpp"

namespace varps::serve {

BatchQueue::BatchQueue(const Pipeline& pipe, BatchQueueOptions opts)
    : pipe_(pipe), opts_(opts), worker_([this] { work(); }) {}

BatchQueue::~BatchQueue() { drain(); }

std::optional<std::future<ImageResult>> BatchQueue::submit(const ImageRequest& request) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (closing_ || static_cast<int>(queue_.size()) >= opts_.max_queue) return std::nullopt;
  queue_.push_back({request, {}});
  std::future<ImageResult> f = queue_.back().result.get_future();
  stats_.queue_depth = static_cast<int64_t>(queue_.size());
  wake_.notify_all();
  return f;
}

BatchQueueStats BatchQueue::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void BatchQueue::drain() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    closing_ = true;
    wake_.notify_all();
  }
  if (worker_.joinable()) worker_.join();
}

void BatchQueue::work() {
  for (;;) {
    std::vector<Pending> batch;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return closing_ || !queue_.empty(); });
      if (queue_.empty()) return;  // closing, nothing left
      // The first request waits at most max_wait for others to join.
      const auto deadline = std::chrono::steady_clock::now() + opts_.max_wait;
      wake_.wait_until(lock, deadline, [&] {
        return closing_ || static_cast<int>(queue_.size()) >= opts_.max_batch;
      });
      while (!queue_.empty() && static_cast<int>(batch.size()) < opts_.max_batch) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      stats_.queue_depth = static_cast<int64_t>(queue_.size());
    }
    std::vector<ImageRequest> requests;
    for (const Pending& p : batch) requests.push_back(p.request);
    try {
      const GeneratedImages g = pipe_.generate(requests);
      const size_t px = static_cast<size_t>(3 * g.height * g.width);
      int64_t backbone = 0;
      for (int64_t n : g.counters.passes_per_scale) backbone += n;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        ++stats_.passes;
        stats_.backbone_passes += backbone;
        stats_.images += g.count;
      }
      for (size_t i = 0; i < batch.size(); ++i) {
        ImageResult r;
        r.height = g.height;
        r.width = g.width;
        r.pixels.assign(g.pixels.begin() + static_cast<std::ptrdiff_t>(i * px),
                        g.pixels.begin() + static_cast<std::ptrdiff_t>((i + 1) * px));
        r.tokens = g.tokens[i];
        r.batch_images = static_cast<int>(batch.size());
        batch[i].result.set_value(std::move(r));
      }
    } catch (const std::exception& e) {
      for (Pending& p : batch) {
        ImageResult r;
        r.error = e.what();
        p.result.set_value(std::move(r));
      }
    }
  }
}

}  // namespace varps::serve
