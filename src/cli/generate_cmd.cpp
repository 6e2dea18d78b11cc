// `varps generate`: class labels → PNG files (and optionally token maps).
#include <CLI/CLI.hpp>
#include <charconv>
#include <cstdio>
#include <limits>

#include "cli/commands.hpp"
#include "varps/checkpoint.hpp"
#include "varps/config.hpp"
#include "varps/error.hpp"
#include "varps/image.hpp"
#include "varps/pipeline.hpp"

namespace varps::cli {

namespace fs = std::filesystem;

namespace {

// A --class entry: an integer id, or "uncond" (nullopt).
std::optional<int64_t> parse_class(const std::string& text) {
  if (text == "uncond") return std::nullopt;
  int64_t v = 0;
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ec != std::errc() || p != end)
    throw UsageError("invalid value '" + text + "' for --class: expected a class id (an integer) or 'uncond'");
  return v;
}

std::string class_range(const VarConfig& vc) {
  return "this model has classes 0.." + std::to_string(vc.num_classes - 1) + ", and 'uncond' (= " +
         std::to_string(vc.num_classes) + ") for unconditional";
}

}  // namespace

void add_generate(CLI::App& app, GenerateArgs& a) {
  CLI::App* cmd = app.add_subcommand("generate", "Generate images from class labels (one PNG per --class)");
  cmd->add_option("--var", a.var, "VAR transformer checkpoint (.pth or .safetensors), e.g. var_d16.pth")
      ->type_name("FILE");
  cmd->add_option("--vae", a.vae, "VQVAE tokenizer checkpoint (.pth or .safetensors), e.g. vae_ch160v4096z32.pth")
      ->type_name("FILE");
  cmd->add_option("--preset", a.preset,
                  "Instead of checkpoints: deterministic random weights of a released size (d16, d20, d24, d30, "
                  "d36), for timing; the images are noise ('tiny' is the built-in smoke-test model)")
      ->type_name("NAME");
  cmd->add_option("--class,-c", a.classes,
                  "Class label of one image; repeat the flag or give a comma list (--class 1,2,3). 'uncond' "
                  "(or the number of classes) draws an unconditional image. Images are generated in this order")
      ->type_name("ID")
      ->delimiter(',')
      ->required();
  cmd->add_option("--cfg", a.cfg,
                  "Classifier-free guidance weight at the last scale (ramps linearly from 0 at the first); "
                  ">= 0, 0 disables guidance")
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
  cmd->add_option("--seed", a.seed, "Seed of the first image; image i uses seed + i (a non-negative 64-bit integer)")
      ->type_name("S")
      ->capture_default_str();
  cmd->add_option("--out,-o", a.out, "Output directory (created if missing); writes 000000.png, 000001.png, ...")
      ->type_name("DIR")
      ->required();
  cmd->add_option("--tokens-out", a.tokens_out,
                  "Also write the sampled token maps as JSON: {\"patch_nums\": [...], \"images\": [{\"class\", "
                  "\"seed\", \"tokens\": [[scale 0, row-major], ...]}]}")
      ->type_name("FILE");
  cmd->add_option("--threads,-j", a.threads, "CPU threads; 0 uses all cores")->type_name("N")->capture_default_str();
  auto* verbose = cmd->add_flag("--verbose,-v", a.verbose,
                                "Print the model description, thread count, progress and per-stage timings (ms)");
  cmd->add_flag("--quiet,-q", a.quiet, "Print nothing but errors (no notes, no progress)")->excludes(verbose);
  cmd->footer(
      "Without --var/--vae/--preset, a built-in tiny model with deterministic random weights is used (8x8 noise "
      "images, 10 classes; for smoke tests).\n\n"
      "Randomness: each token is drawn with a counter-based Philox4x32-10 generator keyed by the image's seed and "
      "indexed by (scale, token position), so each image's randomness depends only on its own (class, seed, "
      "sampling params): the same class, seed, --cfg, --top-k and --top-p give the same random draws whatever "
      "other images are generated alongside it.\n\n"
      "Each PNG carries tEXt metadata: varps:class, varps:seed, varps:cfg, varps:top_k, varps:top_p, varps:var "
      "and varps:vae (or varps:preset), varps:version, Software.\n\n" +
      std::string(kExitStatusHelp));
}

int run_generate(const GenerateArgs& a) {
  // ---- flags alone (usage errors, exit 2) ----
  SamplingParams sp;
  sp.cfg = parse_double("--cfg", a.cfg, 0.0, std::numeric_limits<double>::infinity());
  sp.top_k = parse_int("--top-k", a.top_k, 0);
  sp.top_p = parse_double("--top-p", a.top_p, 0.0, 1.0);
  const uint64_t seed = parse_u64("--seed", a.seed);
  const int threads = parse_int("--threads", a.threads, 0);
  if (a.var.empty() != a.vae.empty())
    throw UsageError(a.var.empty() ? "--vae was given without --var: a checkpoint run needs both"
                                   : "--var was given without --vae: a checkpoint run needs both");
  const bool from_files = !a.var.empty();
  if (from_files && !a.preset.empty())
    throw UsageError("--preset cannot be combined with --var/--vae (it replaces the checkpoints by random weights)");
  if (!a.preset.empty()) {
    bool known = false;
    std::string names;
    for (const std::string& n : preset_names()) {
      known = known || n == a.preset;
      if (!names.empty()) names += ", ";
      names += n;
    }
    if (!known) throw UsageError("unknown --preset '" + a.preset + "' (known: " + names + ")");
  }
  std::vector<std::optional<int64_t>> classes;
  for (const std::string& c : a.classes) classes.push_back(parse_class(c));
  if (classes.empty()) throw UsageError("--class: give at least one class");
  if (classes.size() - 1 > std::numeric_limits<uint64_t>::max() - seed)
    throw UsageError("--seed " + a.seed + " + " + std::to_string(classes.size() - 1) +
                     " (one seed per image) does not fit in 64 bits");

  Console con(a.verbose, a.quiet);
  const std::string preset = from_files ? "" : (a.preset.empty() ? "tiny" : a.preset);

  // ---- cheap checks against the model's header (exit 1) ----
  VarConfig vc;
  if (from_files) {
    vc = infer_var_config(Checkpoint::open(a.var));
    infer_vae_config(Checkpoint::open(a.vae));
  } else {
    vc = preset_var_config(preset);
  }
  std::vector<ImageRequest> requests;
  for (size_t i = 0; i < classes.size(); ++i) {
    ImageRequest r;
    if (classes[i]) {
      const int64_t c = *classes[i];
      if (c < 0 || c > vc.num_classes)
        throw Error("class " + std::to_string(c) + " is out of range: " + class_range(vc));
      r.class_id = static_cast<int>(c);
    } else {
      r.class_id = vc.num_classes;
    }
    r.seed = seed + i;
    r.sampling = sp;
    requests.push_back(r);
  }
  const fs::path out_dir = a.out;
  prepare_output_dir(out_dir);
  if (!a.tokens_out.empty()) check_output_file_dir(a.tokens_out, "--tokens-out");

  // ---- load ----
  if (preset == "tiny")
    con.note(std::string(a.preset.empty() ? "no --var/--vae given: " : "") +
             "using the built-in tiny model with deterministic random weights; the images are noise (for smoke "
             "tests)");
  else if (!from_files)
    con.note("--preset " + preset + ": deterministic random weights of the released " + preset +
             " size, for timing; the images are noise");
  con.info(from_files ? "loading " + a.var + " and " + a.vae : "building random weights (preset " + preset + ")");
  const auto t_load = std::chrono::steady_clock::now();
  PipelineOptions po;
  po.threads = threads;
  Pipeline pipe = from_files ? Pipeline::from_files(a.var, a.vae, po) : Pipeline::from_preset(preset, po);
  const double load_ms = ms_since(t_load);
  con.info("model: " + pipe.var_config().describe());
  con.info("tokenizer: " + pipe.vae_config().describe());
  con.info("weights: " + pipe.weights_origin());
  con.info("threads: " + std::to_string(pipe.threads()));

  // ---- generate ----
  GenerateOptions go;
  con.start_task();
  go.progress = [&con](int si, int n) { con.progress("scale", si + 1, n, si + 1 == n ? "decoding" : ""); };
  GeneratedImages imgs = pipe.generate(requests, go);
  con.end_task();

  // ---- write ----
  const auto t_write = std::chrono::steady_clock::now();
  const int64_t H = imgs.height, W = imgs.width;
  const std::vector<int>& pn = pipe.var_config().patch_nums;
  for (size_t i = 0; i < requests.size(); ++i) {
    const ImageRequest& r = requests[i];
    std::vector<std::pair<std::string, std::string>> text = {
        {"varps:class", std::to_string(r.class_id)},
        {"varps:num_classes", std::to_string(vc.num_classes)},
        {"varps:seed", std::to_string(r.seed)},
        {"varps:cfg", format_double(r.sampling.cfg)},
        {"varps:top_k", std::to_string(r.sampling.top_k)},
        {"varps:top_p", format_double(r.sampling.top_p)},
    };
    if (from_files) {
      text.emplace_back("varps:var", a.var);
      text.emplace_back("varps:vae", a.vae);
    } else {
      text.emplace_back("varps:preset", preset);
      text.emplace_back("varps:weights", pipe.weights_origin());
    }
    text.emplace_back("varps:version", kVersion);
    text.emplace_back("Software", std::string("varps ") + kVersion);
    char name[32];
    std::snprintf(name, sizeof name, "%06zu.png", i);
    const RgbImage rgb = to_rgb8(imgs.pixels.data() + i * 3 * H * W, static_cast<int>(H), static_cast<int>(W));
    write_png(out_dir / name, rgb, text);
  }
  if (!a.tokens_out.empty()) {
    std::vector<TokenRecord> recs;
    for (size_t i = 0; i < requests.size(); ++i)
      recs.push_back({requests[i].class_id, requests[i].seed, &imgs.tokens[i]});
    write_tokens_json(a.tokens_out, pn, recs);
  }
  const double write_ms = ms_since(t_write);

  if (a.verbose) {
    const StageTimings& t = imgs.timings;
    auto row = [&con](const std::string& name, double ms, const char* what) {
      char line[160];
      std::snprintf(line, sizeof line, "  %-22s%10.2f%s", name.c_str(), ms, what);
      con.info(line);
    };
    double transformer = 0;
    for (double ms : t.transformer_ms) transformer += ms;
    con.info("timings (ms):");
    row("load weights", load_ms, "");
    row("setup", t.setup_ms, "  (class embedding, AdaLN, KV cache)");
    row("transformer", transformer, "  (all scales)");
    for (size_t si = 0; si < t.transformer_ms.size(); ++si) {
      const int p = si < pn.size() ? pn[si] : 0;
      row("  scale " + std::to_string(si + 1) + "/" + std::to_string(t.transformer_ms.size()) + " (" +
              std::to_string(p) + "x" + std::to_string(p) + ")",
          t.transformer_ms[si], "");
    }
    row("sampling", t.sampling_ms, "  (guidance, top-k/top-p, draw)");
    row("residual path", t.residual_ms, "  (upsample, Phi, downsample)");
    row("decode", t.decode_ms, "  (VQVAE decoder)");
    row("total", t.total_ms, "  (generation, without loading and writing)");
    row("write files", write_ms, "");
  }
  con.status("wrote " + std::to_string(requests.size()) + " image" + (requests.size() == 1 ? "" : "s") + " (" +
             std::to_string(W) + "x" + std::to_string(H) + ") to " + out_dir.string() +
             (a.tokens_out.empty() ? "" : ", tokens to " + a.tokens_out));
  return 0;
}

}  // namespace varps::cli
