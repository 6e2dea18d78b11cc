// The fast modes' flags, registered and read in one place for every command
// that generates.
#include <CLI/CLI.hpp>
#include <filesystem>

#include "cli/commands.hpp"
#include "varps/builtin_models.hpp"
#include "varps/config.hpp"

namespace varps::cli {

void add_fast_mode_flags(CLI::App* cmd, FastModeArgs& a) {
  const char* group = "Fast modes (off by default; docs/fast-modes.md)";
  cmd->add_option("--cfg-until-scale", a.cfg_until_scale,
                  "Guidance only in scales 1..N: later scales run the conditional rows alone (SkipVAR, StageVAR); "
                  "0 guides every scale")
      ->type_name("N")
      ->group(group)
      ->capture_default_str();
  cmd->add_option("--prune", a.prune,
                  "Token pruning (FastVAR): at the last --prune-scales scales, this fraction of each image's tokens, "
                  "those nearest the scale's mean input, skip the transformer and take the previous scale's output; "
                  "in [0, 1), 0 switches it off")
      ->type_name("FRACTION")
      ->group(group)
      ->capture_default_str();
  cmd->add_option("--prune-scales", a.prune_scales, "How many of the last scales --prune applies to")
      ->type_name("N")
      ->group(group)
      ->capture_default_str();
  cmd->add_option("--refiner", a.refiner,
                  "Drafter and refiner (CoDe): a smaller VAR of the same tokenizer draws the scales from "
                  "--refine-from-scale on; a checkpoint, a built-in model name (fmnist-d4) or, with --preset, a "
                  "preset size (d16)")
      ->type_name("MODEL")
      ->group(group);
  cmd->add_option("--refine-from-scale", a.refine_from_scale,
                  "The first scale the --refiner draws (CoDe's N drafted scales: N + 1)")
      ->type_name("N")
      ->group(group)
      ->capture_default_str();
}

FastModes parse_fast_modes(const FastModeArgs& a) {
  FastModes m;
  m.cfg_until_scale = parse_int("--cfg-until-scale", a.cfg_until_scale, 0);
  m.prune = parse_double("--prune", a.prune, 0.0, 1.0);
  if (m.prune >= 1.0) throw UsageError("invalid value '" + a.prune + "' for --prune: expected a fraction in [0, 1)");
  m.prune_scales = parse_int("--prune-scales", a.prune_scales, 1);
  m.refine_from_scale = parse_int("--refine-from-scale", a.refine_from_scale, 0);
  if (a.refiner.empty() != (m.refine_from_scale == 0))
    throw UsageError(a.refiner.empty() ? "--refine-from-scale needs --refiner (the model that takes over)"
                                       : "--refiner needs --refine-from-scale (the first scale it draws)");
  return m;
}

void attach_refiner(Pipeline& pipe, const FastModeArgs& a, const ModelChoice& model, const Console& con) {
  if (a.refiner.empty()) return;
  for (const std::string& name : builtin_model_names())
    if (a.refiner == name) {
      pipe.attach_refiner(find_builtin_model(name).var);
      con.info("refiner: the built-in model '" + name + "'");
      return;
    }
  if (!std::filesystem::exists(a.refiner)) {
    for (const std::string& name : preset_names())
      if (a.refiner == name) {
        if (model.from_files)
          throw UsageError("--refiner " + name + " is a preset size: it pairs with a --preset model only");
        pipe.attach_refiner_preset(name);
        con.info("refiner: random weights of preset " + name);
        return;
      }
  }
  pipe.attach_refiner(a.refiner);
  con.info("refiner: " + a.refiner);
}

void add_fast_mode_metadata(std::vector<std::pair<std::string, std::string>>& fields, const FastModes& fast,
                            const FastModeArgs& args) {
  if (!fast.any()) return;
  fields.emplace_back("varps:fast", describe(fast));
  if (!args.refiner.empty()) fields.emplace_back("varps:refiner", args.refiner);
}

}  // namespace varps::cli
