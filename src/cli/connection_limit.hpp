#pragma once
// The serve command's connections, at most `limit` served at a time, each
// by a worker of its own. One more is read by one of a few shedding
// workers, whose thread is marked so that the server answers it 503 at
// once and closes it: a client over the limit hears so instead of waiting
// unseen in the queue. (The library hands a task queue no socket, so a
// connection can be refused only by answering it.)
#include <httplib.h>

#include <atomic>
#include <cstddef>
#include <functional>

namespace varps::cli {

class ConnectionLimit : public httplib::TaskQueue {
 public:
  explicit ConnectionLimit(size_t limit, size_t shedders = 2);
  void enqueue(std::function<void()> fn) override;
  void shutdown() override;
  // Whether the calling thread is answering a connection over the limit.
  static bool over_limit();

 private:
  size_t limit_;
  std::atomic<size_t> live_{0};
  httplib::ThreadPool workers_;
  httplib::ThreadPool shedders_;
};

}  // namespace varps::cli
