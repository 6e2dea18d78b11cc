// The safetensors reader (src/io/safetensors.cpp, through Checkpoint::open),
// then every tensor read and converted.
#include "fuzz_support.hpp"
#include "varps/checkpoint.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::filesystem::path path = varps::fuzz::input_file(data, size, "fuzz.safetensors");
  varps::fuzz::only_varps_errors([&] {
    varps::fuzz::read_every_tensor(varps::Checkpoint::open(path));
  });
  return 0;
}
