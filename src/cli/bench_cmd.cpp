// `varps bench`: latency, memory and diversity of P parallel streams, batched
// against sequential, in one run; writes bench.{json,csv,md,svg}.
#include <sys/utsname.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <thread>

#include "cli/commands.hpp"
#include "varps/bench_runner.hpp"
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
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    const std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (item == "batched")
      out.push_back(Schedule::Batched);
    else if (item == "sequential")
      out.push_back(Schedule::Sequential);
    else
      throw UsageError("invalid value '" + text + "' for --schedule: expected a comma list of batched, sequential");
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

}  // namespace

void add_bench(CLI::App& app, BenchArgs& a) {
  CLI::App* cmd = app.add_subcommand(
      "bench", "Measure latency, peak memory and diversity of P parallel streams, batched against sequential");
  cmd->add_option("--var", a.var, "VAR transformer checkpoint (.pth or .safetensors)")->type_name("FILE");
  cmd->add_option("--vae", a.vae, "VQVAE tokenizer checkpoint (.pth or .safetensors)")->type_name("FILE");
  cmd->add_option("--preset", a.preset,
                  "Instead of checkpoints: random weights of a released size (d16, d20, d24, d30, d36) or 'tiny' "
                  "(the default without --var/--vae)")
      ->type_name("NAME");
  cmd->add_option("--streams", a.streams, "Comma list of stream counts P to measure")
      ->type_name("LIST")
      ->capture_default_str();
  cmd->add_option("--schedule", a.schedules,
                  "Comma list: batched (all streams in one backbone pass per scale) and/or sequential (each stream "
                  "alone, one after the other)")
      ->type_name("LIST")
      ->capture_default_str();
  cmd->add_option("--warmup", a.warmup, "Untimed requests before the timed ones, per (schedule, P)")
      ->type_name("N")
      ->capture_default_str();
  cmd->add_option("--repeats", a.repeats, "Timed requests per (schedule, P); medians and spread are over these")
      ->type_name("N")
      ->capture_default_str();
  cmd->add_option("--class", a.class_id, "Class of every stream (or 'uncond')")->type_name("ID")->capture_default_str();
  cmd->add_option("--seed", a.seed, "Seed of the first stream; stream p uses seed + p")
      ->type_name("S")
      ->capture_default_str();
  cmd->add_option("--cfg", a.cfg, "Guidance weight (0: no unconditional rows)")->type_name("W")->capture_default_str();
  cmd->add_option("--top-k", a.top_k, "Top-k filter, 0 off")->type_name("K")->capture_default_str();
  cmd->add_option("--top-p", a.top_p, "Top-p filter in [0, 1], 0 off")->type_name("P")->capture_default_str();
  cmd->add_option("--temperature", a.temperature, "Sampling temperature, > 0")->type_name("T")->capture_default_str();
  cmd->add_option("--threads,-j", a.threads, "CPU threads; 0 uses all cores")->type_name("N")->capture_default_str();
  cmd->add_option("--out,-o", a.out, "Output directory for bench.json, bench.csv, bench.md and bench.svg")
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

int run_bench(const BenchArgs& a) {
  bench::BenchConfig cfg;
  cfg.streams = parse_int_list("--streams", a.streams);
  cfg.schedules = parse_schedules(a.schedules);
  cfg.warmup = parse_int("--warmup", a.warmup, 0);
  cfg.repeats = parse_int("--repeats", a.repeats, 1);
  cfg.seed = parse_u64("--seed", a.seed);
  cfg.sampling = parse_sampling(a.cfg, a.top_k, a.top_p, a.temperature);
  const int threads = parse_int("--threads", a.threads, 0);
  const std::optional<int64_t> cls = parse_class("--class", a.class_id);
  const ModelChoice model = choose_model(a.var, a.vae, a.preset);

  const VarConfig vc = peek_var_config(model);
  cfg.class_id = cls ? check_class(*cls, vc) : vc.num_classes;
  prepare_output_dir(a.out);

  Console con(false, a.quiet);
  Pipeline pipe = load_model(model, threads, con);
  cfg.progress = [&con](const std::string& line) { con.status(line); };

  std::map<std::string, std::string> machine = {
      {"backend", pipe.backend_name()},
      {"backend_info", pipe.backend_info()},
      {"dtype", "float32"},
      {"cpu", cpu_model()},
      {"cpus_online", std::to_string(std::thread::hardware_concurrency())},
      {"commit", VARPS_GIT_COMMIT},
      {"varps_version", kVersion},
  };
  struct utsname u;
  if (uname(&u) == 0) machine["os"] = std::string(u.sysname) + " " + u.release + " " + u.machine;
  std::map<std::string, std::string> model_info = {
      {"var", pipe.var_config().describe()},
      {"vae", pipe.vae_config().describe()},
      {"weights", pipe.weights_origin()},
      {"class", std::to_string(cfg.class_id)},
      {"seed", std::to_string(cfg.seed)},
      {"warmup", std::to_string(cfg.warmup)},
      {"repeats", std::to_string(cfg.repeats)},
  };
  for (auto& [k, v] : sampling_fields(cfg.sampling, "")) model_info[k] = v;
  const bench::Report report = bench::run_bench(pipe, cfg, machine, model_info);
  bench::write_report(a.out, report);
  std::fputs(bench::report_markdown(report).c_str(), stdout);
  con.status("wrote bench.json, bench.csv, bench.md and bench.svg to " + a.out);
  return 0;
}

}  // namespace varps::cli
