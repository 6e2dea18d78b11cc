// `varps adapter init`: writes an untrained ParScale adapter that fits a
// model, for experiments and benchmarks.
#include <CLI/CLI.hpp>

#include "cli/commands.hpp"
#include "varps/adapter.hpp"
#include "varps/checkpoint.hpp"
#include "varps/config.hpp"
#include "varps/error.hpp"

namespace varps::cli {

void add_adapter(CLI::App& app, AdapterArgs& a) {
  CLI::App* group = app.add_subcommand("adapter", "ParScale adapters (per-stream prefixes and aggregation)");
  group->require_subcommand(1);
  CLI::App* init = group->add_subcommand(
      "init", "Write an untrained ParScale adapter (seeded random prefixes, uniform aggregation) for a model");
  init->add_option("--model", a.model, "VAR transformer checkpoint (.pth or .safetensors) the adapter must fit")
      ->type_name("FILE");
  init->add_option("--preset", a.preset, "Instead of --model: a preset size (tiny, d16, d20, d24, d30, d36)")
      ->type_name("NAME");
  init->add_option("--streams,-P", a.streams, "Number of parallel streams P (>= 1)")->type_name("P")->required();
  init->add_option("--prefix-tokens,-T", a.prefix_tokens, "Prefix key/value positions per stream and layer (>= 0)")
      ->type_name("T")
      ->required();
  init->add_option("--smooth", a.smooth, "Aggregation smoothing s in [0, 1]: every stream's weight is at least s/P")
      ->type_name("S")
      ->capture_default_str();
  init->add_option("--seed", a.seed, "Seed of the random prefixes and of aggregate.0")
      ->type_name("N")
      ->capture_default_str();
  init->add_option("--out,-o", a.out, "Output file (safetensors)")->type_name("FILE")->required();
  init->footer(
      "The adapter is UNTRAINED: prefixes are random (keys of about unit norm, like the model's L2-normalised "
      "keys; values of scale 0.02), aggregate.0 has PyTorch's default Linear init and aggregate.2 is zero, so every "
      "stream starts with weight 1/P. It changes the images without improving them; it exists to measure what P "
      "streams cost and to test the engine. Format: see 'ParScale adapters' in README.md.\n\n" +
      std::string(kExitStatusHelp));
}

int run_adapter(const AdapterArgs& a) {
  const int streams = parse_int("--streams", a.streams, 1);
  const int tokens = parse_int("--prefix-tokens", a.prefix_tokens, 0);
  const double smooth = parse_double("--smooth", a.smooth, 0.0, 1.0);
  const uint64_t seed = parse_u64("--seed", a.seed);
  if (a.model.empty() == a.preset.empty())
    throw UsageError(a.model.empty() ? "adapter init: give --model FILE or --preset NAME"
                                     : "adapter init: --model and --preset exclude each other");
  VarConfig vc;
  if (!a.preset.empty()) {
    const ModelChoice m = choose_model(ModelArgs{"", "", a.preset});  // validates the name
    vc = preset_var_config(m.preset);
  } else {
    vc = infer_var_config(Checkpoint::open(a.model));
  }
  check_output_file_dir(a.out, "--out");
  const ParScaleAdapter adapter = ParScaleAdapter::random_init(vc, streams, tokens, seed, smooth);
  adapter.save(a.out);
  Console con(false, false);
  con.status("wrote an untrained adapter (P=" + std::to_string(streams) + ", T=" + std::to_string(tokens) +
             ", s=" + format_double(smooth) + ", " + format_bytes(adapter.bytes()) + ") for " + vc.describe() +
             " to " + a.out);
  return 0;
}

}  // namespace varps::cli
