// The pickle machine (src/io/pickle.cpp) on arbitrary bytes, with the
// limits it has by default; a state dict it accepts must be self-consistent.
#include <span>

#include "fuzz_support.hpp"
#include "io/pickle.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  varps::fuzz::only_varps_errors([&] {
    for (const varps::io::PickledTensor& t : varps::io::parse_state_dict_pickle(std::span(data, size), "fuzz.pkl"))
      if (t.shape.size() != t.strides.size() || t.storage_offset < 0)
        varps::fuzz::finding("tensor '" + t.name + "' has a rank mismatch or a negative offset");
  });
  return 0;
}
