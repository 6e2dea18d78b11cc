// `varps precision-error`: what a reduced matrix-product precision changes
// against float32 on the same model and requests (varps/precision_error.hpp).
#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "varps/config.hpp"
#include "varps/error.hpp"
#include "varps/precision_error.hpp"

namespace varps::cli {

void add_precision_error(CLI::App& app, PrecisionErrorArgs& a) {
  CLI::App* cmd = app.add_subcommand(
      "precision-error",
      "Measure a reduced --precision against fp32 on one model: per scale, teacher-forced logits error, KL and "
      "top-1 agreement, free-running token agreement, and the images' PSNR");
  add_model_flags(cmd, a.model);
  cmd->add_option("--images", a.images, "Images compared; image i has class (--class + 37·i) mod classes, seed --seed + i")
      ->type_name("N")
      ->capture_default_str();
  cmd->add_option("--class", a.class_id, "Class of the first image")->type_name("ID")->capture_default_str();
  cmd->add_option("--seed", a.seed, "Seed of the first image")->type_name("S")->capture_default_str();
  add_sampling_flags(cmd, a.sampling, /*with_temperature=*/false);
  add_device_flags(cmd, a.device);
  cmd->add_option("--out,-o", a.out, "Directory for precision-error.md and precision-error.json")
      ->type_name("DIR")
      ->required();
  cmd->add_flag("--quiet,-q", a.quiet, "Print nothing but errors");
  cmd->footer(std::string("Both pipelines hold the model at once (float32 and --precision), and run the same "
                          "requests: float32 first, then the candidate with float32's tokens forced (teacher "
                          "forcing), then the candidate sampling on its own (free running).\n\n") +
              kExitStatusHelp);
}

int run_precision_error(const PrecisionErrorArgs& a) {
  PipelineOptions po = parse_device(a.device);
  if (po.precision == "fp32") throw UsageError("--precision: give the reduced precision to measure (bf16, ...)");
  const ModelChoice m = choose_model(a.model);
  const int images = parse_int("--images", a.images, 1);
  const int first_class = parse_int("--class", a.class_id, 0);
  const uint64_t seed = parse_u64("--seed", a.seed);
  const SamplingParams sampling = parse_sampling(a.sampling);
  const int classes = peek_var_config(m).num_classes;
  if (first_class >= classes)
    throw Error("--class " + a.class_id + " is outside the model's " + std::to_string(classes) + " classes");
  prepare_output_dir(a.out);
  Console con(false, a.quiet);

  PipelineOptions fp32 = po;
  fp32.precision = "fp32";
  const Pipeline reference = load_model(m, fp32, con);
  const Pipeline candidate = load_model(m, po, con);
  std::vector<ImageRequest> requests;
  for (int i = 0; i < images; ++i)
    requests.push_back({(first_class + 37 * i) % classes, seed + static_cast<uint64_t>(i), sampling});
  con.status("comparing " + po.precision + " with fp32 on " + std::to_string(images) + " images");
  const bench::PrecisionError e = bench::measure_precision_error(reference, candidate, requests);

  const std::string model = m.from_files ? m.var : "preset " + m.preset;
  const std::string md = "`" + po.precision + "` against `fp32`, " + model + "; " + po.precision +
                         " backend: " + candidate.backend_info() + "; cfg " + format_double(sampling.cfg) + ", top-k " +
                         std::to_string(sampling.top_k) + ", top-p " + format_double(sampling.top_p) + ".\n\n" +
                         bench::precision_error_markdown(e);
  std::ofstream(std::filesystem::path(a.out) / "precision-error.md") << md;
  nlohmann::ordered_json j;
  j["precision"] = po.precision;
  j["model"] = model;
  j["backend_info"] = candidate.backend_info();
  j["images"] = e.images;
  j["logits_error"] = e.logits_error;
  j["token_agreement"] = e.token_agreement;
  auto db = [](double v) { return std::isinf(v) ? nlohmann::ordered_json("inf") : nlohmann::ordered_json(v); };
  j["psnr_db"] = db(e.psnr_db);
  j["decoded_psnr_db"] = db(e.decoded_psnr_db);
  for (const bench::ScalePrecisionError& s : e.scales)
    j["scales"].push_back({{"side", s.side},
                           {"logits_error", s.logits_error},
                           {"kl", s.kl},
                           {"top1_agreement", s.top1_agreement},
                           {"token_agreement", s.token_agreement}});
  std::ofstream(std::filesystem::path(a.out) / "precision-error.json") << j.dump(2) << "\n";
  if (!a.quiet) std::cout << md;
  return 0;
}

}  // namespace varps::cli
