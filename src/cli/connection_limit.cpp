#include "cli/connection_limit.hpp"

namespace varps::cli {

namespace {
// Set while a shedding worker runs a connection: the handlers it calls
// cannot be told otherwise.
thread_local bool t_over_limit = false;
}  // namespace

ConnectionLimit::ConnectionLimit(size_t limit, size_t shedders)
    : limit_(limit), workers_(limit), shedders_(shedders) {}

void ConnectionLimit::enqueue(std::function<void()> fn) {
  if (live_.fetch_add(1) < limit_) {
    workers_.enqueue([this, fn = std::move(fn)] {
      fn();
      live_.fetch_sub(1);
    });
    return;
  }
  live_.fetch_sub(1);
  shedders_.enqueue([fn = std::move(fn)] {
    t_over_limit = true;
    fn();
    t_over_limit = false;
  });
}

void ConnectionLimit::shutdown() {
  workers_.shutdown();
  shedders_.shutdown();
}

bool ConnectionLimit::over_limit() { return t_over_limit; }

}  // namespace varps::cli
