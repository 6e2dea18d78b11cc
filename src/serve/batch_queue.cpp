#include "serve/batch_queue.hpp"

#include <algorithm>
#include <map>

namespace varps::serve {

BatchQueue::BatchQueue(const Pipeline& pipe, BatchQueueOptions opts) : pipe_(pipe), opts_(opts) {
  worker_ = std::thread([this] { opts_.joining == Joining::NextScale ? work_by_scale() : work_by_batch(); });
}

BatchQueue::~BatchQueue() { drain(); }

std::optional<Ticket> BatchQueue::submit(const ImageRequest& request) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (closing_ || static_cast<int>(queue_.size()) >= opts_.max_queue) return std::nullopt;
  queue_.push_back({next_id_++, request, {}});
  Ticket t{queue_.back().id, queue_.back().result.get_future()};
  stats_.queue_depth = static_cast<int64_t>(queue_.size());
  wake_.notify_all();
  return t;
}

Withdrawal BatchQueue::withdraw(uint64_t id) {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto queued = std::find_if(queue_.begin(), queue_.end(), [&](const Pending& p) { return p.id == id; });
  if (queued != queue_.end()) {
    queue_.erase(queued);
    stats_.queue_depth = static_cast<int64_t>(queue_.size());
    wake_.notify_all();  // the worker may be waiting with it for company
    return Withdrawal::Queued;
  }
  if (running_.count(id)) {
    withdrawn_.insert(id);
    return Withdrawal::Running;
  }
  return Withdrawal::Finished;
}

bool BatchQueue::stop_if_all_withdrawn(const std::vector<Pending>& batch) {
  for (const Pending& p : batch)
    if (!withdrawn_.count(p.id)) return false;
  for (const Pending& p : batch) {
    withdrawn_.erase(p.id);
    running_.erase(p.id);
  }
  stats_.images_stopped += static_cast<int64_t>(batch.size());
  ++stats_.cohorts_stopped;
  return true;
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

std::vector<BatchQueue::Pending> BatchQueue::take(int64_t room, bool running) {
  std::vector<Pending> batch;
  std::unique_lock<std::mutex> lock(mutex_);
  while (!running) {
    wake_.wait(lock, [&] { return closing_ || !queue_.empty(); });
    if (queue_.empty()) return batch;  // closing, nothing left
    // The first request waits at most max_wait for others to join.
    const auto deadline = std::chrono::steady_clock::now() + opts_.max_wait;
    wake_.wait_until(lock, deadline, [&] {
      return closing_ || queue_.empty() || static_cast<int64_t>(queue_.size()) >= room;
    });
    if (!queue_.empty() || closing_) break;
    // Every waiting request was withdrawn: wait for the next one.
  }
  while (!queue_.empty() && static_cast<int64_t>(batch.size()) < room) {
    running_.insert(queue_.front().id);
    batch.push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
  stats_.queue_depth = static_cast<int64_t>(queue_.size());
  return batch;
}

void BatchQueue::answer(std::vector<Pending>& batch, const GeneratedImages& g, int64_t batch_images) {
  const size_t px = static_cast<size_t>(3 * g.height * g.width);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++stats_.passes;
    stats_.images += g.count;
    for (const Pending& p : batch) {
      running_.erase(p.id);
      stats_.images_discarded += static_cast<int64_t>(withdrawn_.erase(p.id));
    }
  }
  for (size_t i = 0; i < batch.size(); ++i) {
    ImageResult r;
    r.height = g.height;
    r.width = g.width;
    r.pixels.assign(g.pixels.begin() + static_cast<std::ptrdiff_t>(i * px),
                    g.pixels.begin() + static_cast<std::ptrdiff_t>((i + 1) * px));
    r.tokens = g.tokens[i];
    r.batch_images = static_cast<int>(batch_images);
    batch[i].result.set_value(std::move(r));
  }
}

void BatchQueue::fail(std::vector<Pending>& batch, const std::string& error) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const Pending& p : batch) {
      running_.erase(p.id);
      withdrawn_.erase(p.id);
    }
  }
  for (Pending& p : batch) {
    ImageResult r;
    r.error = error;
    p.result.set_value(std::move(r));
  }
}

void BatchQueue::work_by_batch() {
  for (;;) {
    std::vector<Pending> batch = take(opts_.max_batch, false);
    if (batch.empty()) return;
    std::vector<ImageRequest> requests;
    for (const Pending& p : batch) requests.push_back(p.request);
    try {
      GenerateOptions go;
      go.fast = opts_.fast;
      const GeneratedImages g = pipe_.generate(requests, go);
      int64_t backbone = 0;
      for (int64_t n : g.counters.passes_per_scale) backbone += n;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        stats_.backbone_passes += backbone;
      }
      answer(batch, g, static_cast<int64_t>(batch.size()));
    } catch (const std::exception& e) {
      fail(batch, e.what());
    }
  }
}

void BatchQueue::work_by_scale() {
  RollingBatch rolling(pipe_, opts_.max_batch, opts_.fast);
  std::map<uint64_t, std::vector<Pending>> running;  // by cohort
  for (;;) {
    if (rolling.free_images() > 0) {
      std::vector<Pending> joining = take(rolling.free_images(), !rolling.empty());
      if (joining.empty() && rolling.empty()) return;  // closing, nothing left
      if (!joining.empty()) {
        std::vector<ImageRequest> requests;
        for (const Pending& p : joining) requests.push_back(p.request);
        try {
          running[rolling.join(requests)] = std::move(joining);
        } catch (const std::exception& e) {
          fail(joining, e.what());
        }
      }
    }
    // Cohorts whose every client gave up leave before the next pass (their
    // state freed outside the lock the handlers take).
    std::vector<uint64_t> stopped;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!withdrawn_.empty())
        for (const auto& [id, batch] : running)
          if (stop_if_all_withdrawn(batch)) stopped.push_back(id);
    }
    for (uint64_t id : stopped) {
      rolling.leave(id);
      running.erase(id);
    }
    if (rolling.empty()) continue;
    try {
      std::vector<RollingBatch::Finished> done = rolling.step();
      {
        std::lock_guard<std::mutex> lock(mutex_);
        ++stats_.backbone_passes;
      }
      for (RollingBatch::Finished& f : done) {
        answer(running.at(f.cohort), f.images, f.most_images);
        running.erase(f.cohort);
      }
    } catch (const std::exception& e) {
      for (auto& [id, batch] : running) fail(batch, e.what());
      running.clear();
      rolling.clear();
    }
  }
}

}  // namespace varps::serve
