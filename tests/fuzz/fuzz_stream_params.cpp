// The --stream-params file (read_stream_params, src/cli/stream_params.cpp)
// against a released model's configuration; whatever it accepts must be in
// range.
#include "cli/commands.hpp"
#include "fuzz_support.hpp"
#include "varps/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const varps::VarConfig d16 = varps::preset_var_config("d16");
  const std::filesystem::path path = varps::fuzz::input_file(data, size, "streams.json");
  varps::fuzz::only_varps_errors([&] {
    const varps::SamplingParams defaults;
    for (const varps::ImageRequest& r : varps::cli::read_stream_params(path, d16, 207, 0, defaults)) {
      const varps::SamplingParams& s = r.sampling;
      if (r.class_id < 0 || r.class_id > d16.num_classes || !(s.cfg >= 0) || s.top_k < 0 || !(s.top_p >= 0) ||
          !(s.top_p <= 1) || !(s.temperature > 0))
        varps::fuzz::finding("accepted an out-of-range stream (class " + std::to_string(r.class_id) + ")");
    }
  });
  return 0;
}
