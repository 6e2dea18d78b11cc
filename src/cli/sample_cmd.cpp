// `varps sample`: a FID-ready sample set (samples.npz as the standard
// evaluator reads it), in resumable shards, spread over the ranks of an MPI
// job when started by mpirun.
#include <CLI/CLI.hpp>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>

#include "cli/commands.hpp"
#include "cli/mpi_world.hpp"
#include "cli/sample_set.hpp"
#include "io/sha256.hpp"
#include "varps/adapter.hpp"
#include "varps/config.hpp"
#include "varps/error.hpp"
#include "varps/image.hpp"
#include "varps/pipeline.hpp"

namespace varps::cli {

namespace fs = std::filesystem;

namespace {

// --classes A:B, half-open like a Python range.
std::vector<int> parse_class_range(const std::string& text) {
  const size_t colon = text.find(':');
  if (colon == std::string::npos) throw UsageError("--classes '" + text + "': expected A:B (for example 0:1000)");
  const int a = parse_int("--classes", text.substr(0, colon), 0);
  const int b = parse_int("--classes", text.substr(colon + 1), 0);
  if (a >= b) throw UsageError("--classes '" + text + "' is empty: it needs A < B (classes A, A+1, ..., B-1)");
  std::vector<int> out;
  for (int c = a; c < b; ++c) out.push_back(c);
  return out;
}

std::string format_eta(double seconds) {
  if (!(seconds >= 0) || seconds > 1e8) return "?";
  const long long s = static_cast<long long>(seconds);
  char buf[64];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%lldh%02lldm", s / 3600, s / 60 % 60);
  else std::snprintf(buf, sizeof buf, "%lldm%02llds", s / 60, s % 60);
  return buf;
}

// A testing aid: VARPS_SAMPLE_KILL_AFTER=N makes the process kill itself
// (SIGKILL, no clean-up) once it has generated N images, in the middle of a
// shard unless N ends one, as a crash or a preempted node would.
int64_t kill_after() {
  const char* v = std::getenv("VARPS_SAMPLE_KILL_AFTER");
  return v ? std::strtoll(v, nullptr, 10) : -1;
}

struct ShardWork {
  const SampleSetJob& job;
  const Pipeline& pipe;
  const GenerateOptions& opts;
  const fs::path& dir;
  int batch;
  bool png;
  std::vector<std::pair<std::string, std::string>> png_model;  // model_metadata and the fast modes
  int num_classes = 0;
  int64_t generated = 0;                                      // images this process made
  int64_t kill_at = -1;

  // Makes shard k: its images in batches, appended to a temporary file that
  // is renamed into place once whole.
  void run(int64_t k, int rank) {
    const fs::path final_path = shard_path(dir, k);
    const fs::path tmp = final_path.string() + ".tmp" + std::to_string(rank);
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw Error("cannot write '" + tmp.string() + "'");
    for (int64_t i = job.shard_begin(k); i < job.shard_end(k); i += batch) {
      const int64_t n = std::min<int64_t>(batch, job.shard_end(k) - i);
      std::vector<ImageRequest> requests;
      for (int64_t j = 0; j < n; ++j) requests.push_back(job.request(i + j));
      const GeneratedImages g = pipe.generate(requests, opts);
      for (int64_t j = 0; j < n; ++j) {
        const RgbImage rgb = to_rgb8(g.pixels.data() + j * 3 * g.height * g.width, static_cast<int>(g.height),
                                     static_cast<int>(g.width));
        out.write(reinterpret_cast<const char*>(rgb.pixels.data()), static_cast<std::streamsize>(rgb.pixels.size()));
        if (png) write_image_png(i + j, requests[static_cast<size_t>(j)], rgb);
      }
      out.flush();
      if (!out) throw Error("cannot write '" + tmp.string() + "': write failed (disk full?)");
      generated += n;
      if (i + n < job.shard_end(k)) kill_if_due();
    }
    out.close();
    std::error_code ec;
    fs::rename(tmp, final_path, ec);
    if (ec) throw Error("cannot write '" + final_path.string() + "': " + ec.message());
    kill_if_due();
  }

  void kill_if_due() const {
    if (kill_at >= 0 && generated >= kill_at) std::raise(SIGKILL);
  }

  void write_image_png(int64_t i, const ImageRequest& r, const RgbImage& rgb) const {
    const std::vector<std::pair<std::string, std::string>> text =
        image_png_text(r, num_classes, png_model, {{"varps:index", std::to_string(i)}});
    char name[32];
    std::snprintf(name, sizeof name, "%06lld.png", static_cast<long long>(i));
    write_png(dir / "png" / name, rgb, text);
  }
};

}  // namespace

void add_sample(CLI::App& app, SampleArgs& a) {
  CLI::App* cmd = app.add_subcommand(
      "sample",
      "Sample a FID set: N images per class into samples.npz (uint8 [N, H, W, 3]) in resumable shards, spread over "
      "the ranks of an MPI job under mpirun");
  add_model_flags(cmd, a.model);
  add_adapter_flag(cmd, a.adapter, "every image runs as its P streams");
  cmd->add_option("--out,-o", a.out, "Job directory (created if missing; a rerun of the same command resumes it)")
      ->type_name("DIR")
      ->required();
  auto* range = cmd->add_option("--classes", a.class_range,
                                "Classes A, A+1, ..., B-1 (half-open, like a Python range). Default: every class")
                    ->type_name("A:B");
  cmd->add_option("--class,-c", a.classes, "Instead of --classes: these classes (repeat or comma list)")
      ->type_name("ID")
      ->delimiter(',')
      ->excludes(range);
  cmd->add_option("--per-class", a.per_class, "Images per class")->type_name("N")->capture_default_str();
  add_sampling_flags(cmd, a.sampling);
  cmd->add_option("--seed", a.seed, "Seed of image 0; image i (class-major order) uses seed + i")
      ->type_name("S")
      ->capture_default_str();
  cmd->add_option("--batch", a.batch,
                  "Images per batched pass (a speed setting: the images do not depend on it)")
      ->type_name("N")
      ->capture_default_str();
  cmd->add_option("--shard-size", a.shard_size,
                  "Images per shard: the unit of work a rank takes and a rerun resumes from")
      ->type_name("N")
      ->capture_default_str();
  cmd->add_flag("--png", a.png, "Also write every image as DIR/png/NNNNNN.png, as generate writes them");
  add_device_flags(cmd, a.device);
  add_fast_mode_flags(cmd, a.fast);
  auto* verbose = cmd->add_flag("--verbose,-v", a.verbose, "Print the model description and one line per shard");
  cmd->add_flag("--quiet,-q", a.quiet, "Print nothing but errors")->excludes(verbose);
  cmd->footer(
      "Defaults follow the official FID protocol: 50 images per class, every class, cfg 1.5, top-p 0.96, top-k "
      "900. Image i of the job (class-major: class classes[i / per-class]) uses seed --seed + i, so every image "
      "is determined by the job's parameters alone.\n\n"
      "DIR gets samples.npz (arr_0: uint8 [N, H, W, 3] images, arr_1: int64 [N] class labels; numpy.load reads "
      "it), manifest.json (weights' SHA-256, every parameter, counts, wall time, images/s), job.json, and the "
      "shards (DIR/shards, each written to a temporary file and renamed). A job killed at any moment and started "
      "again with the same command continues from its complete shards, with the same final samples.npz; a "
      "different command on the same DIR is refused, naming the parameter.\n\n"
      "Distributed: in a build with MPI, `mpirun -np R varps sample ...` gives shard k to rank k mod R; with "
      "--device cuda each rank takes GPU local_rank mod devices; rank 0 writes samples.npz. The result equals "
      "the single-process run's.\n\n"
      "Example (the 50,000-image FID set of a d16 model):\n"
      "  varps sample --var var_d16.pth --vae vae_ch160v4096z32.pth --out fid-d16\n\n" +
      std::string(kExitStatusHelp));
}

int run_sample(const SampleArgs& a) {
  // ---- flags alone (usage errors, exit 2) ----
  const SamplingParams sp = parse_sampling(a.sampling);
  const uint64_t seed = parse_u64("--seed", a.seed);
  PipelineOptions device = parse_device(a.device);
  const int per_class = parse_int("--per-class", a.per_class, 1);
  const int batch = parse_int("--batch", a.batch, 1);
  const int shard_size = parse_int("--shard-size", a.shard_size, 1);
  const ModelChoice model = choose_model(a.model);
  GenerateOptions opts;
  opts.fast = parse_fast_modes(a.fast);
  if (started_by_mpi_launcher() && !mpi_compiled())
    throw Error("started by an MPI launcher, but this build of varps has no MPI support (install libopenmpi-dev "
                "and rebuild), so its processes cannot share the job; run it as one process without mpirun");
  MpiWorld world;
  Console con(a.verbose, a.quiet || world.rank() != 0);
  const std::string who = world.size() > 1 ? "rank " + std::to_string(world.rank()) + ": " : "";

  // ---- the job (exit 1 for what the model or the files refuse) ----
  const VarConfig vc = peek_var_config(model);
  check_fast_modes(opts.fast, vc, !a.fast.refiner.empty());
  SampleSetJob job;
  if (!a.classes.empty()) {
    for (const std::string& c : a.classes) {
      const std::optional<int64_t> id = parse_class("--class", c);
      job.classes.push_back(id ? check_class(*id, vc) : vc.num_classes);
    }
  } else if (!a.class_range.empty()) {
    for (int c : parse_class_range(a.class_range)) {
      if (c >= vc.num_classes)
        throw Error("--classes " + a.class_range + ": class " + std::to_string(c) + " is out of range, this model has "
                    "classes 0.." + std::to_string(vc.num_classes - 1) + " (use --class uncond for unconditional images)");
      job.classes.push_back(c);
    }
  } else {
    for (int c = 0; c < vc.num_classes; ++c) job.classes.push_back(c);
  }
  job.per_class = per_class;
  job.sampling = sp;
  job.seed = seed;
  job.shard_size = shard_size;
  if (static_cast<uint64_t>(job.images()) - 1 > std::numeric_limits<uint64_t>::max() - seed)
    throw UsageError("--seed " + a.seed + " + " + std::to_string(job.images() - 1) + " does not fit in 64 bits");
  const std::optional<ParScaleAdapter> adapter = read_adapter(a.adapter, vc);
  const fs::path dir = a.out;
  prepare_output_dir(dir);

  // Rank 0 checks the directory against the job before any rank works.
  std::string setup_error;
  try {
    if (world.rank() == 0) {
      nlohmann::ordered_json& id = job.identity;
      if (model.from_files) {
        id["var"] = fs::path(model.var).filename().string();
        id["var_sha256"] = io::sha256_file(model.var);
        id["vae"] = fs::path(model.vae).filename().string();
        id["vae_sha256"] = io::sha256_file(model.vae);
      } else {
        id["preset"] = model.preset;
      }
      if (!a.adapter.empty()) {
        id["adapter"] = fs::path(a.adapter).filename().string();
        id["adapter_sha256"] = io::sha256_file(a.adapter);
      }
      if (opts.fast.any()) {
        id["fast"] = describe(opts.fast);
        if (!a.fast.refiner.empty()) id["refiner"] = a.fast.refiner;
      }
      id["classes"] = job.classes;
      id["per_class"] = job.per_class;
      id["cfg"] = sp.cfg;
      id["top_k"] = sp.top_k;
      id["top_p"] = sp.top_p;
      id["temperature"] = sp.temperature;
      id["seed"] = seed;
      id["shard_size"] = job.shard_size;
      id["png"] = a.png;
      id["device"] = device.device;
      id["precision"] = device.precision;
      claim_sample_dir(dir, job);
    }
  } catch (const std::exception& e) {
    setup_error = e.what();
  }
  if (world.first_failed_rank(setup_error.empty()) >= 0) {
    if (!setup_error.empty()) throw Error(setup_error);
    return 1;
  }

  // ---- every rank: its shards ----
  const auto t_start = std::chrono::steady_clock::now();
  std::string work_error;
  int64_t generated = 0, resumed = 0;
  try {
    if (device.device == "cuda") {
      const int devices = cuda_device_count();
      device.device_index = devices > 0 ? world.local_rank() % devices : 0;
    }
    Pipeline pipe = load_model(model, device, con);
    attach_adapter(pipe, adapter, a.adapter, con);
    attach_refiner(pipe, a.fast, model, con);
    const int64_t side = static_cast<int64_t>(vc.patch_nums.back()) * pipe.vae_config().downsample();
    job.height = job.width = side;
    fs::create_directories(dir / "shards");
    if (a.png) fs::create_directories(dir / "png");
    ShardWork work{job, pipe, opts, dir, batch, a.png, model_metadata(model, pipe), vc.num_classes, 0, kill_after()};
    add_adapter_metadata(work.png_model, a.adapter, pipe);
    add_fast_mode_metadata(work.png_model, opts.fast, a.fast);
    std::vector<int64_t> mine;
    for (int64_t k = world.rank(); k < job.shards(); k += world.size()) {
      if (shard_complete(dir, job, k)) ++resumed;
      else mine.push_back(k);
    }
    const int64_t todo = [&] {
      int64_t n = 0;
      for (int64_t k : mine) n += job.shard_end(k) - job.shard_begin(k);
      return n;
    }();
    if (resumed > 0) con.note(who + "resuming: " + std::to_string(resumed) + " shard(s) already complete");
    const bool tty = ::isatty(STDERR_FILENO) == 1 && !a.quiet;
    for (size_t s = 0; s < mine.size(); ++s) {
      work.run(mine[s], world.rank());
      const double secs = ms_since(t_start) / 1000.0;
      const double rate = static_cast<double>(work.generated) / secs;
      char line[200];
      std::snprintf(line, sizeof line, "%sshard %lld (%zu/%zu of this process's), %lld/%lld images, %.3f images/s, ETA %s",
                    who.c_str(), static_cast<long long>(mine[s]), s + 1, mine.size(),
                    static_cast<long long>(work.generated), static_cast<long long>(todo), rate,
                    format_eta(static_cast<double>(todo - work.generated) / rate).c_str());
      if (tty) {
        const int filled = todo > 0 ? static_cast<int>(20 * work.generated / todo) : 20;
        const std::string bar = "[" + std::string(static_cast<size_t>(filled), '#') +
                                std::string(static_cast<size_t>(20 - filled), '.') + "] ";
        std::fprintf(stderr, "\rvarps: %s%s", bar.c_str(), line);
        if (s + 1 == mine.size()) std::fprintf(stderr, "\n");
      } else if (!a.quiet) {
        std::fprintf(stderr, "varps: %s\n", line);
      }
    }
    generated = work.generated;
  } catch (const std::exception& e) {
    work_error = e.what();
  }
  const int failed = world.first_failed_rank(work_error.empty());
  if (failed >= 0) {
    if (!work_error.empty()) throw Error(who + work_error);
    throw Error("rank " + std::to_string(failed) + " failed (its error is above); rerun the same command to resume");
  }
  const long long all_generated = world.sum(generated);
  const double wall_s = ms_since(t_start) / 1000.0;
  if (world.rank() != 0) return 0;

  // ---- rank 0: the archive and the manifest ----
  const fs::path npz = merge_sample_set(dir, job);
  nlohmann::ordered_json m;
  m["varps_version"] = kVersion;
  m["job"] = job.identity;
  m["images"] = job.images();
  m["height"] = job.height;
  m["width"] = job.width;
  m["shards"] = job.shards();
  m["ranks"] = world.size();
  m["arrays"] = {{"arr_0", "uint8 [N, H, W, 3] images, class-major"}, {"arr_1", "int64 [N] class labels"}};
  m["this_run"] = {{"images_generated", all_generated},
                   {"wall_s", wall_s},
                   {"images_per_s", wall_s > 0 ? static_cast<double>(all_generated) / wall_s : 0.0}};
  {
    std::ofstream out(dir / "manifest.json", std::ios::trunc);
    out << m.dump(2) << '\n';
    if (!out) throw Error("cannot write '" + (dir / "manifest.json").string() + "'");
  }
  con.status("wrote " + std::to_string(job.images()) + " images (" + std::to_string(job.width) + "x" +
             std::to_string(job.height) + ") to " + npz.string() + "; " + std::to_string(all_generated) +
             " generated in this run");
  return 0;
}

}  // namespace varps::cli
