// Picks a backend by name at run time; the CUDA one exists only in builds
// configured with -DVARPS_CUDA=ON.
#include "backend.hpp"
#include "varps/error.hpp"

namespace varps {

#ifdef VARPS_HAVE_CUDA
bool cuda_backend_compiled() { return true; }
#else
bool cuda_backend_compiled() { return false; }
std::unique_ptr<Backend> make_cuda_backend(const BackendOptions&) {
  throw Error("this build of varps has no CUDA backend (configure with -DVARPS_CUDA=ON)");
}
#endif

std::unique_ptr<Backend> make_backend(const BackendOptions& opts) {
  const std::string& p = opts.precision;
  if (p != "fp32" && p != "bf16" && p != "fp16")
    throw Error("unknown precision '" + p + "' (expected fp32, bf16 or fp16)");
  if (opts.device == "cpu") {
    if (p != "fp32") throw Error("the CPU backend computes in fp32 only (precision " + p + " needs --device cuda)");
    return make_cpu_backend(opts.threads);
  }
  if (opts.device == "cuda") return make_cuda_backend(opts);
  throw Error("unknown device '" + opts.device + "' (expected cpu or cuda)");
}

}  // namespace varps
