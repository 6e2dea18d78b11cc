// Choosing and loading the model of a command: checkpoints, a preset of
// random weights, or the built-in trained model.
#include <CLI/CLI.hpp>

#include "cli/commands.hpp"
#include "varps/builtin_models.hpp"
#include "varps/checkpoint.hpp"
#include "varps/config.hpp"

namespace varps::cli {

void add_model_flags(CLI::App* cmd, ModelArgs& a, const std::string& vae_note) {
  cmd->add_option("--var", a.var, "VAR transformer checkpoint (.pth or .safetensors), e.g. var_d16.pth")
      ->type_name("FILE");
  cmd->add_option("--vae", a.vae,
                  "VQVAE tokenizer checkpoint (.pth or .safetensors), e.g. vae_ch160v4096z32.pth" + vae_note)
      ->type_name("FILE");
  cmd->add_option("--preset", a.preset,
                  "Instead of checkpoints: deterministic random weights of a released size (d16, d20, d24, d30, "
                  "d36), for timing (the images are noise); 'tiny' is the smoke-test model. Without "
                  "--var/--vae/--preset: the built-in trained model 'fmnist'")
      ->type_name("NAME");
}

ModelChoice choose_model(const ModelArgs& args) {
  const std::string &var = args.var, &vae = args.vae, &preset = args.preset;
  if (var.empty() != vae.empty())
    throw UsageError(var.empty() ? "--vae was given without --var: a checkpoint run needs both"
                                 : "--var was given without --vae: a checkpoint run needs both");
  ModelChoice m;
  m.from_files = !var.empty();
  if (m.from_files && !preset.empty())
    throw UsageError("--preset cannot be combined with --var/--vae (it replaces the checkpoints by random weights)");
  if (!preset.empty()) {
    bool known = false;
    std::string names;
    for (const std::string& n : preset_names()) {
      known = known || n == preset;
      if (!names.empty()) names += ", ";
      names += n;
    }
    if (!known) throw UsageError("unknown --preset '" + preset + "' (known: " + names + ")");
  }
  m.var = var;
  m.vae = vae;
  m.preset = preset;
  if (!m.from_files && preset.empty()) {
    const BuiltinModel b = find_builtin_model("fmnist");
    m.from_files = true;
    m.var = b.var.string();
    m.vae = b.vae.string();
    m.builtin = b.name;
  }
  return m;
}

VarConfig peek_var_config(const ModelChoice& m) {
  if (!m.from_files) return preset_var_config(m.preset);
  const VarConfig vc = infer_var_config(Checkpoint::open(m.var));
  infer_vae_config(Checkpoint::open(m.vae));
  return vc;
}

Pipeline load_model(const ModelChoice& m, const PipelineOptions& po, const Console& con, bool with_encoder) {
  if (m.preset == "tiny")
    con.note("using the tiny smoke-test model with deterministic random weights; the images are noise (the "
             "trained built-in model is the default without --preset)");
  else if (!m.from_files)
    con.note("--preset " + m.preset + ": deterministic random weights of the released " + m.preset +
             " size, for timing; the images are noise");
  if (!m.builtin.empty())
    con.note("using the built-in model '" + m.builtin + "': " + find_builtin_model(m.builtin).summary);
  con.info(m.from_files ? "loading " + m.var + " and " + m.vae : "building random weights (preset " + m.preset + ")");
  PipelineOptions gen = po;
  gen.vae_encoder = with_encoder;
  Pipeline pipe = m.from_files ? Pipeline::from_files(m.var, m.vae, gen) : Pipeline::from_preset(m.preset, gen);
  con.info("model: " + pipe.var_config().describe());
  con.info("tokenizer: " + pipe.vae_config().describe());
  con.info("weights: " + pipe.weights_origin());
  con.info("backend: " + pipe.backend_name() + ", " + pipe.backend_info());
  if (pipe.backend_name() == "cpu") con.info("threads: " + std::to_string(pipe.threads()));
  return pipe;
}

std::vector<std::pair<std::string, std::string>> model_metadata(const ModelChoice& m, const Pipeline& pipe) {
  if (!m.builtin.empty()) return {{"varps:model", m.builtin}, {"varps:var", m.var}, {"varps:vae", m.vae}};
  if (m.from_files) return {{"varps:var", m.var}, {"varps:vae", m.vae}};
  return {{"varps:preset", m.preset}, {"varps:weights", pipe.weights_origin()}};
}

}  // namespace varps::cli
