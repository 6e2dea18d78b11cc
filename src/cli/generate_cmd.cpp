// `varps generate`: class labels → PNG files (and optionally token maps).
#include <CLI/CLI.hpp>
#include <charconv>
#include <cstdio>
#include <limits>

#include "cli/commands.hpp"
#include "varps/adapter.hpp"
#include "varps/checkpoint.hpp"
#include "varps/config.hpp"
#include "varps/error.hpp"
#include "varps/image.hpp"
#include "varps/pipeline.hpp"

namespace varps::cli {

namespace fs = std::filesystem;

void add_generate(CLI::App& app, GenerateArgs& a) {
  CLI::App* cmd = app.add_subcommand("generate", "Generate images from class labels (one PNG per --class)");
  add_model_flags(cmd, a.model);
  cmd->add_option("--class,-c", a.classes,
                  "Class label of one image; repeat the flag or give a comma list (--class 1,2,3). 'uncond' "
                  "(or the number of classes) draws an unconditional image. Images are generated in this order")
      ->type_name("ID")
      ->delimiter(',');
  add_sampling_flags(cmd, a.sampling);
  cmd->add_option("--seed", a.seed, "Seed of the first image; image i uses seed + i (a non-negative 64-bit integer)")
      ->type_name("S")
      ->capture_default_str();
  cmd->add_option("--streams,-P", a.streams,
                  "Parallel streams per class: P images of each --class, seeds continuing the count, all through "
                  "the backbone in one batched pass per scale")
      ->type_name("P")
      ->capture_default_str();
  cmd->add_option("--stream-params", a.stream_params,
                  "JSON list, one object per stream, each optionally setting \"class\", \"seed\", \"cfg\", "
                  "\"top_k\", \"top_p\", \"temperature\" (parameter-based diversity); unset fields come from the "
                  "flags (seed: --seed + index, class: the single --class). Replaces --class/--streams")
      ->type_name("FILE");
  add_adapter_flag(cmd, a.adapter,
                   "every image becomes the adapter's P streams, each with its own learned prefix, run in the same "
                   "batched pass and aggregated into one token map per image (combines with "
                   "--streams/--stream-params, which count images)");
  cmd->add_option("--out,-o", a.out, "Output directory (created if missing); writes 000000.png, 000001.png, ...")
      ->type_name("DIR")
      ->required();
  cmd->add_option("--tokens-out", a.tokens_out,
                  "Also write the sampled token maps as JSON: {\"patch_nums\": [...], \"images\": [{\"class\", "
                  "\"seed\", \"tokens\": [[scale 0, row-major], ...]}]}")
      ->type_name("FILE");
  add_device_flags(cmd, a.device);
  add_fast_mode_flags(cmd, a.fast);
  auto* verbose = cmd->add_flag("--verbose,-v", a.verbose,
                                "Print the model description, thread count, progress and per-stage timings (ms)");
  cmd->add_flag("--quiet,-q", a.quiet, "Print nothing but errors (no notes, no progress)")->excludes(verbose);
  cmd->footer(
      "Without --var/--vae/--preset, the built-in model 'fmnist' is used: a small VAR trained on Fashion-MNIST "
      "(32x32 images; classes 0 T-shirt/top, 1 trouser, 2 pullover, 3 dress, 4 coat, 5 sandal, 6 shirt, 7 sneaker, "
      "8 bag, 9 ankle boot; docs/quality.md). --preset tiny is a random-weight smoke-test model (8x8 noise).\n\n"
      "Randomness: each token is drawn with a counter-based Philox4x32-10 generator keyed by the image's seed and "
      "indexed by (scale, token position), so each image's randomness depends only on its own (class, seed, "
      "sampling params): the same class, seed, --cfg, --top-k and --top-p give the same random draws whatever "
      "other images are generated alongside it.\n\n"
      "Each PNG carries tEXt metadata: varps:class, varps:seed, varps:cfg, varps:top_k, varps:top_p, varps:var "
      "and varps:vae (and varps:model for the built-in model, or varps:preset), varps:version, Software.\n\n" +
      std::string(kExitStatusHelp));
}

int run_generate(const GenerateArgs& a) {
  // ---- flags alone (usage errors, exit 2) ----
  const SamplingParams sp = parse_sampling(a.sampling);
  const uint64_t seed = parse_u64("--seed", a.seed);
  const PipelineOptions device = parse_device(a.device);
  const int streams = parse_int("--streams", a.streams, 1);
  const ModelChoice model = choose_model(a.model);
  const FastModes fast = parse_fast_modes(a.fast);
  std::vector<std::optional<int64_t>> classes;
  for (const std::string& c : a.classes) classes.push_back(parse_class("--class", c));
  if (!a.stream_params.empty()) {
    if (streams != 1) throw UsageError("--stream-params lists the streams itself: drop --streams");
    if (classes.size() > 1) throw UsageError("--stream-params takes at most one --class (the default class)");
  } else {
    if (classes.empty()) throw UsageError("--class: give at least one class (or --stream-params)");
    const uint64_t images = static_cast<uint64_t>(classes.size()) * static_cast<uint64_t>(streams);
    if (images - 1 > std::numeric_limits<uint64_t>::max() - seed)
      throw UsageError("--seed " + a.seed + " + " + std::to_string(images - 1) +
                       " (one seed per image) does not fit in 64 bits");
  }

  Console con(a.verbose, a.quiet);

  // ---- cheap checks against the model's header (exit 1) ----
  const VarConfig vc = peek_var_config(model);
  check_fast_modes(fast, vc, !a.fast.refiner.empty());
  std::vector<ImageRequest> requests;
  if (!a.stream_params.empty()) {
    std::optional<int> default_class;
    if (!classes.empty()) default_class = classes[0] ? check_class(*classes[0], vc) : vc.num_classes;
    requests = read_stream_params(a.stream_params, vc, default_class, seed, sp);
  } else {
    std::vector<int> ids;
    for (const auto& c : classes) ids.push_back(c ? check_class(*c, vc) : vc.num_classes);
    requests = expand_streams(ids, streams, seed, sp);
  }
  const std::optional<ParScaleAdapter> adapter = read_adapter(a.adapter, vc);
  const fs::path out_dir = a.out;
  prepare_output_dir(out_dir);
  if (!a.tokens_out.empty()) check_output_file_dir(a.tokens_out, "--tokens-out");

  // ---- load ----
  const auto t_load = std::chrono::steady_clock::now();
  Pipeline pipe = load_model(model, device, con);
  attach_adapter(pipe, adapter, a.adapter, con);
  attach_refiner(pipe, a.fast, model, con);
  const double load_ms = ms_since(t_load);

  // ---- generate ----
  GenerateOptions go;
  go.fast = fast;
  con.start_task();
  go.progress = [&con](int si, int n) { con.progress("scale", si + 1, n, si + 1 == n ? "decoding" : ""); };
  GeneratedImages imgs = pipe.generate(requests, go);
  con.end_task();

  // ---- write ----
  const auto t_write = std::chrono::steady_clock::now();
  const int64_t H = imgs.height, W = imgs.width;
  const std::vector<int>& pn = pipe.var_config().patch_nums;
  std::vector<std::pair<std::string, std::string>> png_model = model_metadata(model, pipe);
  add_adapter_metadata(png_model, a.adapter, pipe);
  add_fast_mode_metadata(png_model, fast, a.fast);
  for (size_t i = 0; i < requests.size(); ++i) {
    const ImageRequest& r = requests[i];
    const std::vector<std::pair<std::string, std::string>> text =
        image_png_text(r, vc.num_classes, png_model);
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
