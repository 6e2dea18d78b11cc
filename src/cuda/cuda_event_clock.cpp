// The CUDA backend's work clock: events recorded on its stream, so stage
// and request times are the device's, and taking them never stalls the
// stream the way a synchronisation per stage would.
#include <cuda_runtime.h>

#include "cuda/cuda_backend.hpp"
#include "cuda/cuda_check.hpp"

namespace varps::cuda {

namespace {

class EventClock final : public WorkClock {
 public:
  explicit EventClock(cudaStream_t stream) : stream_(stream) {}
  ~EventClock() override {
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
  }
  EventClock(const EventClock&) = delete;
  EventClock& operator=(const EventClock&) = delete;

  void mark() override {
    cudaEvent_t e = nullptr;
    VARPS_CUDA_CHECK(cudaEventCreate(&e));
    events_.push_back(e);
    VARPS_CUDA_CHECK(cudaEventRecord(e, stream_));
  }

  std::vector<double> intervals_ms() override {
    std::vector<double> out;
    if (events_.empty()) return out;
    VARPS_CUDA_CHECK(cudaEventSynchronize(events_.back()));
    for (size_t i = 1; i < events_.size(); ++i) {
      float ms = 0.0f;
      VARPS_CUDA_CHECK(cudaEventElapsedTime(&ms, events_[i - 1], events_[i]));
      out.push_back(ms);
    }
    return out;
  }

  std::string kind() const override { return "CUDA events on the backend's stream"; }

 private:
  cudaStream_t stream_;
  std::vector<cudaEvent_t> events_;
};

}  // namespace

std::unique_ptr<WorkClock> CudaBackend::work_clock() { return std::make_unique<EventClock>(stream()); }

}  // namespace varps::cuda
