// The ParScale adapter reader (ParScaleAdapter::load,
// src/model/parscale_adapter.cpp) and the fit against the tiny model.
#include "fuzz_support.hpp"
#include "varps/adapter.hpp"
#include "varps/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const varps::VarConfig tiny = varps::preset_var_config("tiny");
  const std::filesystem::path path = varps::fuzz::input_file(data, size, "adapter.safetensors");
  varps::fuzz::only_varps_errors([&] {
    const varps::ParScaleAdapter a = varps::ParScaleAdapter::load(path);
    if (a.depth() < 1 || a.prefix_v.size() != a.prefix_k.size())
      varps::fuzz::finding("an adapter with " + std::to_string(a.prefix_k.size()) + " prefix_k and " +
                           std::to_string(a.prefix_v.size()) + " prefix_v tensors was accepted");
    a.check_fits(tiny);
  });
  return 0;
}
