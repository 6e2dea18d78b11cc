// Picks a backend by name at run time; the CUDA one exists only in builds
// configured with -DVARPS_CUDA=ON.
#ifdef VARPS_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

#include "backend.hpp"
#include "varps/pipeline.hpp"
#include "varps/error.hpp"

namespace varps {

#ifdef VARPS_HAVE_CUDA
bool cuda_backend_compiled() { return true; }
int cuda_device_count() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess ? count : 0;
}
#else
int cuda_device_count() { return 0; }
bool cuda_backend_compiled() { return false; }
std::unique_ptr<Backend> make_cuda_backend(const BackendOptions&) {
  throw Error("this build of varps has no CUDA backend (configure with -DVARPS_CUDA=ON)");
}
#endif

void check_backend_choice(const std::string& device, const std::string& precision) {
  if (device != "cpu" && device != "cuda") throw Error("unknown device '" + device + "' (expected cpu or cuda)");
  if (precision != "fp32" && precision != "bf16" && precision != "fp16" && precision != "int8")
    throw Error("unknown precision '" + precision + "' (expected fp32, bf16, fp16 or int8)");
  if (device == "cpu" && precision == "fp16")
    throw Error("the CPU backend computes in fp32, bf16 or int8 (precision fp16 needs --device cuda)");
  if (device == "cuda" && precision == "int8")
    throw Error("the CUDA backend computes in fp32, bf16 or fp16 (precision int8 needs --device cpu)");
}

std::unique_ptr<Backend> make_backend(const BackendOptions& opts) {
  check_backend_choice(opts.device, opts.precision);
  if (opts.device == "cpu") return make_cpu_backend(opts.threads, opts.precision);
  return make_cuda_backend(opts);
}

}  // namespace varps
