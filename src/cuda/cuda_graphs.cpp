// Recorded steps of the CUDA backend: a step that runs again and again on
// the same arrays (a scale of the transformer) is captured once as a CUDA
// graph, so each later run is one launch instead of hundreds.
#include <cuda_runtime.h>

#include "cuda/cuda_backend.hpp"
#include "cuda/cuda_check.hpp"

namespace varps::cuda {

namespace {

struct CudaGraphStep final : StepRecording {
  bool ran = false;  // once as it is: the next call captures
  bool as_is = false;  // the step could not be captured: run it every time
  cudaGraphExec_t exec = nullptr;
  // The backend's scratch when captured: it is reallocated when an op needs
  // more (the decoder, the stage API), and the graph holds the old address.
  const void* scratch = nullptr;
  ~CudaGraphStep() override {
    if (exec) cudaGraphExecDestroy(exec);
  }
};

}  // namespace

StepRun CudaBackend::run_recorded(std::unique_ptr<StepRecording>& slot, const std::function<void()>& step) {
  if (!graphs_) {
    step();
    return StepRun::AsIs;
  }
  if (!slot) slot = std::make_unique<CudaGraphStep>();
  auto& rec = static_cast<CudaGraphStep&>(*slot);
  if (rec.exec && rec.scratch == scratch_.data()) {
    VARPS_CUDA_CHECK(cudaGraphLaunch(rec.exec, stream()));
    return StepRun::Replayed;
  }
  if (rec.exec) {  // stale: capture again with the scratch there is now
    VARPS_CUDA_CHECK(cudaGraphExecDestroy(rec.exec));
    rec.exec = nullptr;
  }
  // The first run sizes everything the step allocates lazily.
  if (rec.as_is || !rec.ran) {
    rec.ran = true;
    step();
    return StepRun::AsIs;
  }

  const cudaStream_t s = stream();
  VARPS_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  capturing_ = true;
  bool captured = true;
  try {
    step();
  } catch (const Error&) {
    captured = false;  // it allocated, or a call was refused while capturing
  } catch (...) {
    capturing_ = false;
    cudaGraph_t partial = nullptr;
    cudaStreamEndCapture(s, &partial);
    if (partial) cudaGraphDestroy(partial);
    cudaGetLastError();
    throw;
  }
  capturing_ = false;
  cudaGraph_t graph = nullptr;
  cudaError_t e = cudaStreamEndCapture(s, &graph);
  if (captured && e == cudaSuccess) e = cudaGraphInstantiate(&rec.exec, graph, 0);
  if (graph) cudaGraphDestroy(graph);
  if (!captured || e != cudaSuccess) {
    cudaGetLastError();  // a refused capture leaves its error behind
    if (rec.exec) cudaGraphExecDestroy(rec.exec);
    rec.exec = nullptr;
    rec.as_is = true;
    step();  // nothing of the capture ran
    return StepRun::AsIs;
  }
  rec.scratch = scratch_.data();
  VARPS_CUDA_CHECK(cudaGraphLaunch(rec.exec, s));
  return StepRun::Recorded;
}

}  // namespace varps::cuda
