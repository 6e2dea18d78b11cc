// The token-map file of `edit --input-tokens` (read_tokens_json,
// src/cli/common.cpp) against the tiny model; whatever it accepts must have
// the model's scales and vocabulary.
#include "cli/commands.hpp"
#include "fuzz_support.hpp"
#include "varps/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const varps::VarConfig tiny = varps::preset_var_config("tiny");
  const std::filesystem::path path = varps::fuzz::input_file(data, size, "tokens.json");
  varps::fuzz::only_varps_errors([&] {
    for (const varps::TokenMaps& maps : varps::cli::read_tokens_json(path, tiny)) {
      if (maps.size() != tiny.patch_nums.size()) varps::fuzz::finding("accepted the wrong number of scales");
      for (size_t s = 0; s < maps.size(); ++s) {
        if (maps[s].size() != static_cast<size_t>(tiny.patch_nums[s] * tiny.patch_nums[s]))
          varps::fuzz::finding("accepted a token map of the wrong size");
        for (int32_t t : maps[s])
          if (t < 0 || t >= tiny.vocab_size) varps::fuzz::finding("accepted token " + std::to_string(t));
      }
    }
  });
  return 0;
}
