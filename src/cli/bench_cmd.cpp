// `varps bench`: latency, memory and diversity of P parallel streams, batched
// against sequential, in one run; writes bench.{json,csv,md,svg}.
#include <sys/utsname.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <limits>
#include <thread>

#include "bench/garment_features.hpp"
#include "cli/commands.hpp"
#include "varps/adapter.hpp"
#include "varps/bench_runner.hpp"
#include "varps/builtin_models.hpp"
#include "varps/config.hpp"
#include "varps/parscale_compare.hpp"
#include "varps/error.hpp"
#include "varps_commit.hpp"

namespace varps::cli {

namespace {

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      return colon == std::string::npos ? line : line.substr(colon + 2);
    }
  return "unknown";
}

std::vector<Schedule> parse_schedules(const std::string& text) {
  std::vector<Schedule> out;
  for (const std::string& item : split_commas(text)) {
    if (item == "batched")
      out.push_back(Schedule::Batched);
    else if (item == "sequential")
      out.push_back(Schedule::Sequential);
    else
      throw UsageError("invalid value '" + text + "' for --schedule: expected a comma list of batched, sequential");
  }
  return out;
}

}  // namespace

void add_bench(CLI::App& app, BenchArgs& a) {
  CLI::App* cmd = app.add_subcommand(
      "bench", "Measure latency, peak memory and diversity of P parallel streams, batched against sequential");
  add_model_flags(cmd, a.model);
  cmd->add_option("--streams", a.streams, "Comma list of stream counts P to measure")
      ->type_name("LIST")
      ->capture_default_str();
  cmd->add_option("--schedule", a.schedules,
                  "Comma list: batched (all streams in one backbone pass per scale) and/or sequential (each stream "
                  "alone, one after the other)")
      ->type_name("LIST")
      ->capture_default_str();
  cmd->add_option("--warmup", a.warmup,
                  "Untimed requests before the timed ones, per (schedule, P); with --device cuda and CUDA graphs, "
                  "2 or more, so that every timed request replays the recorded steps")
      ->type_name("N")
      ->capture_default_str();
  cmd->add_option("--repeats", a.repeats, "Timed requests per (schedule, P); medians and spread are over these")
      ->type_name("N")
      ->capture_default_str();
  cmd->add_option("--peak-tflops", a.peak_tflops,
                  "The hardware's peak for the run's precision (e.g. the vendor's dense bf16 figure): achieved "
                  "rates are also shown as fractions of it; 0: not shown")
      ->type_name("X")
      ->capture_default_str();
  cmd->add_option("--peak-gbps", a.peak_gbps,
                  "The hardware's peak memory bandwidth in GB/s, likewise; 0: not shown")
      ->type_name("X")
      ->capture_default_str();
  cmd->add_option("--class", a.class_id, "Class of every stream (or 'uncond')")->type_name("ID")->capture_default_str();
  cmd->add_option("--seed", a.seed, "Seed of the first stream; stream p uses seed + p")
      ->type_name("S")
      ->capture_default_str();
  add_sampling_flags(cmd, a.sampling);
  add_device_flags(cmd, a.device);
  add_fast_mode_flags(cmd, a.fast);
  add_adapter_flag(cmd, a.adapter,
                   "every image runs as the adapter's P aggregated streams; --streams then counts images per "
                   "request");
  cmd->add_flag("--compare-parscale", a.compare,
                "Instead of the streams table: the base model without an adapter, then with untrained adapters "
                "of each P in --streams, then each --larger model, side by side (latency, peak memory, and their "
                "increase over the base); writes compare.{json,csv,md}");
  cmd->add_option("--larger", a.larger,
                  "With --compare-parscale: comma list of presets to compare against, or 'none' (default: the next "
                  "three released sizes above the base, e.g. d20,d24,d30 for d16; none for tiny)")
      ->type_name("LIST");
  cmd->add_option("--prefix-tokens", a.prefix_tokens, "With --compare-parscale: prefix tokens T of each adapter")
      ->type_name("T")
      ->capture_default_str();
  cmd->add_option("--images", a.images, "With --compare-parscale: images per request (seeds continue the count)")
      ->type_name("N")
      ->capture_default_str();
  cmd->add_option("--out,-o", a.out,
                  "Output directory for bench.json, bench.csv, bench.md and bench.svg (compare.json, compare.csv "
                  "and compare.md with --compare-parscale)")
      ->type_name("DIR")
      ->required();
  cmd->add_flag("--quiet,-q", a.quiet, "No progress on stderr (the table is still printed)");
  cmd->footer(
      "Latency is one whole request (tokens to pixels) per repeat, after warm-up; the report gives median, p10, "
      "p90, min and max. Peak memory is the process's peak resident set during each (schedule, P), reset between "
      "them. Diversity is computed from the produced tokens and images; a control request whose streams share one "
      "seed must show exactly zero. Sanity flags mark measurements that cannot be right (see bench.md).\n\n" +
      std::string(kExitStatusHelp));
}

namespace {

std::map<std::string, std::string> machine_info(const Pipeline& pipe, const PipelineOptions& device) {
  std::map<std::string, std::string> machine = {
      {"backend", pipe.backend_name()},
      {"backend_info", pipe.backend_info()},
      {"dtype", device.precision == "fp32" ? "float32" : device.precision + " matrix operands, float32 elsewhere"},
      {"cpu", cpu_model()},
      {"cpus_online", std::to_string(std::thread::hardware_concurrency())},
      {"commit", VARPS_GIT_COMMIT},
      {"varps_version", kVersion},
  };
  if (device.device == "cuda")
    machine["cuda_graphs"] = device.cuda_graphs ? "each scale's steps replayed from graphs after two requests"
                                                : "off: every op launched";
  struct utsname u;
  if (uname(&u) == 0) machine["os"] = std::string(u.sysname) + " " + u.release + " " + u.machine;
  return machine;
}

// The next (up to) three released sizes above a model of `depth` blocks.
std::vector<std::string> default_larger(const ModelChoice& m, int depth) {
  if (m.preset == "tiny" || !m.builtin.empty()) return {};
  std::vector<std::string> out;
  for (const std::string& name : preset_names())
    if (name != "tiny" && preset_var_config(name).depth > depth && out.size() < 3) out.push_back(name);
  return out;
}

std::vector<std::string> parse_larger(const std::string& text) {
  if (text == "none") return {};
  const std::vector<std::string> names = split_commas(text);
  for (const std::string& name : names) {
    if (name.empty()) throw UsageError("invalid value '" + text + "' for --larger: expected a comma list of presets");
    choose_model(ModelArgs{"", "", name});  // UsageError for an unknown preset
  }
  return names;
}

int run_comparison(const BenchArgs& a, const ModelChoice& model, const bench::CompareConfig& cfg_in,
                   const PipelineOptions& device) {
  bench::CompareConfig cfg = cfg_in;
  const VarConfig vc = peek_var_config(model);
  prepare_output_dir(a.out);
  Console con(false, a.quiet);
  if (a.larger.empty()) cfg.larger = default_larger(model, vc.depth);
  cfg.progress = [&con](const std::string& line) { con.status(line); };
  const std::string base_label = model.from_files ? "d" + std::to_string(vc.depth) + " (checkpoint)" : model.preset;
  std::map<std::string, std::string> model_info = {
      {"base", base_label + ": " + vc.describe()},
      {"weights", model.from_files ? model.var + " + " + model.vae : "random (preset " + model.preset + ")"},
      {"larger", cfg.larger.empty() ? "none" : ""},
      {"parscale_streams", ""},
      {"prefix_tokens", std::to_string(cfg.prefix_tokens)},
      {"adapters", "untrained (varps adapter init semantics, seed " + std::to_string(cfg.adapter_seed) + ")"},
      {"images_per_request", std::to_string(cfg.images)},
      {"class", cfg.unconditional ? "unconditional" : std::to_string(cfg.class_id)},
      {"seed", std::to_string(cfg.seed)},
      {"warmup", std::to_string(cfg.warmup)},
      {"repeats", std::to_string(cfg.repeats)},
  };
  for (const std::string& n : cfg.larger) model_info["larger"] += (model_info["larger"].empty() ? "" : ",") + n;
  model_info["parscale_streams"] = join_ints(cfg.streams);
  for (auto& [k, v] : sampling_fields(cfg.sampling, "")) model_info[k] = v;
  std::map<std::string, std::string> machine;
  const auto load_base = [&] {
    Pipeline pipe = load_model(model, device, con);
    machine = machine_info(pipe, device);
    return pipe;
  };
  const auto load_larger = [&](const std::string& name) {
    con.note("--larger " + name + ": deterministic random weights of the released " + name + " size");
    return Pipeline::from_preset(name, device);
  };
  bench::CompareReport report = bench::run_parscale_comparison(load_base, base_label, cfg, load_larger, {}, model_info);
  for (auto& [k, v] : machine) report.machine.emplace(k, v);
  bench::write_comparison(a.out, report);
  std::fputs(bench::comparison_markdown(report).c_str(), stdout);
  con.status("wrote compare.json, compare.csv and compare.md to " + a.out);
  return 0;
}

}  // namespace

int run_bench(const BenchArgs& a) {
  bench::RunSettings run;
  run.warmup = parse_int("--warmup", a.warmup, 0);
  run.repeats = parse_int("--repeats", a.repeats, 1);
  const double inf = std::numeric_limits<double>::infinity();
  const bench::HardwarePeaks peaks{parse_double("--peak-tflops", a.peak_tflops, 0.0, inf),
                                   parse_double("--peak-gbps", a.peak_gbps, 0.0, inf)};
  run.seed = parse_u64("--seed", a.seed);
  run.sampling = parse_sampling(a.sampling);
  run.streams = parse_int_list("--streams", a.streams);
  const PipelineOptions device = parse_device(a.device);
  const std::optional<int64_t> cls = parse_class("--class", a.class_id);
  const ModelChoice model = choose_model(a.model);
  run.fast = parse_fast_modes(a.fast);

  if (a.compare) {
    if (run.fast.any()) throw UsageError("--compare-parscale runs the exact path: drop the fast modes");
    if (!a.adapter.empty())
      throw UsageError("--compare-parscale builds its own untrained adapters for each P in --streams: drop --adapter");
    if (a.schedules != BenchArgs{}.schedules)
      throw UsageError("--compare-parscale runs every model batched: drop --schedule");
    if (peaks.tflop_per_s > 0 || peaks.gb_per_s > 0)
      throw UsageError("--compare-parscale reports no achieved rates: drop --peak-tflops and --peak-gbps");
    bench::CompareConfig cfg;
    static_cast<bench::RunSettings&>(cfg) = run;
    cfg.prefix_tokens = parse_int("--prefix-tokens", a.prefix_tokens, 0);
    cfg.images = parse_int("--images", a.images, 1);
    cfg.larger = a.larger.empty() ? std::vector<std::string>{} : parse_larger(a.larger);
    const VarConfig vc = peek_var_config(model);
    cfg.class_id = cls ? check_class(*cls, vc) : vc.num_classes;
    cfg.unconditional = !cls;
    for (const std::string& name : cfg.larger)
      if (cls && preset_var_config(name).num_classes <= cfg.class_id)
        throw Error("--class " + std::to_string(cfg.class_id) + " is outside --larger " + name + "'s classes");
    return run_comparison(a, model, cfg, device);
  }
  if (!a.larger.empty() || a.prefix_tokens != BenchArgs{}.prefix_tokens || a.images != BenchArgs{}.images)
    throw UsageError("--larger, --prefix-tokens and --images belong to --compare-parscale");

  bench::BenchConfig cfg;
  static_cast<bench::RunSettings&>(cfg) = run;
  cfg.schedules = parse_schedules(a.schedules);
  cfg.peaks = peaks;

  const VarConfig vc = peek_var_config(model);
  cfg.class_id = cls ? check_class(*cls, vc) : vc.num_classes;
  check_fast_modes(cfg.fast, vc, !a.fast.refiner.empty());
  const std::optional<ParScaleAdapter> adapter = read_adapter(a.adapter, vc);
  prepare_output_dir(a.out);

  Console con(false, a.quiet);
  Pipeline pipe = load_model(model, device, con);
  attach_adapter(pipe, adapter, a.adapter, con);
  attach_refiner(pipe, a.fast, model, con);
  std::optional<bench::GarmentFeatures> garment;
  if (!model.builtin.empty()) {
    garment = bench::GarmentFeatures::load(find_builtin_model(model.builtin).classifier);
    cfg.garment_features = &*garment;
  }
  if (device.device == "cuda" && device.cuda_graphs && cfg.warmup < 2)
    con.note("--warmup " + std::to_string(cfg.warmup) +
             ": the first timed requests run and record the CUDA graphs; --warmup 2 times replays only");
  cfg.progress = [&con](const std::string& line) { con.status(line); };

  std::map<std::string, std::string> model_info = {
      {"var", pipe.var_config().describe()},
      {"vae", pipe.vae_config().describe()},
      {"weights", pipe.weights_origin()},
      {"class", std::to_string(cfg.class_id)},
      {"seed", std::to_string(cfg.seed)},
      {"warmup", std::to_string(cfg.warmup)},
      {"repeats", std::to_string(cfg.repeats)},
  };
  if (garment)
    model_info["feature distance"] =
        "between the streams' images in the built-in garment classifier's 128 features (docs/quality.md)";
  if (adapter)
    model_info["adapter"] = a.adapter + ": P=" + std::to_string(adapter->streams) + " aggregated streams per image, T=" +
                            std::to_string(adapter->prefix_tokens) + ", s=" + format_double(adapter->smooth) +
                            " ('P' in the tables counts images, each of P ParScale streams)";
  for (auto& [k, v] : sampling_fields(cfg.sampling, "")) model_info[k] = v;
  if (cfg.fast.any()) {
    model_info["fast modes"] = describe(cfg.fast) + (a.fast.refiner.empty() ? "" : " (refiner " + a.fast.refiner + ")") +
                               "; work and rates left out (they count the exact path)";
  }
  const bench::Report report = bench::run_bench(pipe, cfg, machine_info(pipe, device), model_info);
  bench::write_report(a.out, report);
  std::fputs(bench::report_markdown(report).c_str(), stdout);
  con.status("wrote bench.json, bench.csv, bench.md and bench.svg to " + a.out);
  return 0;
}

}  // namespace varps::cli
