#include <chrono>

#include "varps/work_clock.hpp"

namespace varps {

namespace {

class HostClock final : public WorkClock {
 public:
  void mark() override { marks_.push_back(std::chrono::steady_clock::now()); }
  std::vector<double> intervals_ms() override {
    std::vector<double> out;
    for (size_t i = 1; i < marks_.size(); ++i)
      out.push_back(std::chrono::duration<double, std::milli>(marks_[i] - marks_[i - 1]).count());
    return out;
  }
  std::string kind() const override { return "host steady clock"; }

 private:
  std::vector<std::chrono::steady_clock::time_point> marks_;
};

}  // namespace

std::unique_ptr<WorkClock> make_host_clock() { return std::make_unique<HostClock>(); }

}  // namespace varps
