// The sampling flags, registered and read in one place for every command
// that samples.
#include <CLI/CLI.hpp>

#include "cli/commands.hpp"

namespace varps::cli {

void add_sampling_flags(CLI::App* cmd, SamplingArgs& a, bool with_temperature) {
  cmd->add_option("--cfg", a.cfg,
                  "Classifier-free guidance weight at the last scale (ramps linearly from 0 at the first); >= 0, 0 "
                  "disables guidance (no unconditional rows)")
      ->type_name("W")
      ->capture_default_str();
  cmd->add_option("--top-k", a.top_k, "Keep the k most likely tokens before drawing; >= 0, 0 switches the filter off")
      ->type_name("K")
      ->capture_default_str();
  cmd->add_option("--top-p", a.top_p,
                  "Nucleus sampling: keep the most likely tokens up to this probability mass; in [0, 1], 0 "
                  "switches the filter off")
      ->type_name("P")
      ->capture_default_str();
  if (with_temperature)
    cmd->add_option("--temperature", a.temperature,
                    "Divides the guided logits before the filters; > 0, 1 leaves them as the official sampler does")
        ->type_name("T")
        ->capture_default_str();
}

SamplingParams parse_sampling(const SamplingArgs& a) { return parse_sampling(a.cfg, a.top_k, a.top_p, a.temperature); }

}  // namespace varps::cli
