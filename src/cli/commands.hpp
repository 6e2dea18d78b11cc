#pragma once
// The `varps` command-line program: a thin layer over the public library API
// (include/varps). Each subcommand registers its flags on a CLI11 sub-app and
// runs from the parsed values; main() owns error reporting.
//
// Exit status: 0 success; 1 runtime error (files, checkpoints, values that
// only the model can judge, such as a class id or an image size); 2 usage
// error (unknown, missing, malformed or conflicting flags). Every error is
// one line on stderr: "varps: error: <message>".
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "varps/adapter.hpp"
#include "varps/pipeline.hpp"

namespace CLI {
class App;
}

namespace varps::cli {

// Keep in step with project(VERSION) in the top-level CMakeLists.txt (a test
// checks that they agree).
inline constexpr const char* kVersion = "0.1.0";

// A command-line mistake: reported like every error, but exits with status 2.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The exit-status paragraph of the subcommands' --help.
inline constexpr const char* kExitStatusHelp =
    "Exit status: 0 on success, 1 when the command fails, 2 for a usage error; errors are one line on stderr, "
    "'varps: error: <message>'.";

// ---- subcommands ----

// Where the model runs: --device, --precision, --cuda-graphs and --threads, shared by the
// commands that run one.
struct DeviceArgs {
  std::string device = "cpu", precision = "fp32", threads = "0", cuda_graphs = "on";
};
void add_device_flags(CLI::App* cmd, DeviceArgs& args);
// UsageError for a malformed value; whether the device exists is judged when
// the pipeline is built.
PipelineOptions parse_device(const DeviceArgs& args);

// --var, --vae and --preset: the model a command runs (choose_model reads
// them). `vae_note` ends --vae's help where a command needs more of it.
struct ModelArgs {
  std::string var, vae, preset;
};
void add_model_flags(CLI::App* cmd, ModelArgs& args, const std::string& vae_note = "");

// --cfg, --top-k, --top-p and --temperature, with a command's defaults.
struct SamplingArgs {
  std::string cfg = "4", top_k = "900", top_p = "0.95", temperature = "1";
};
void add_sampling_flags(CLI::App* cmd, SamplingArgs& args, bool with_temperature = true);
SamplingParams parse_sampling(const SamplingArgs& args);

// The fast modes' flags (varps/fast_modes.hpp), shared by the commands that
// generate.
struct FastModeArgs {
  std::string cfg_until_scale = "0", prune = "0", prune_scales = "2", refiner, refine_from_scale = "0";
};
void add_fast_mode_flags(CLI::App* cmd, FastModeArgs& args);
// UsageError for a malformed value or a refiner without its scale; whether
// the values fit the model is judged when it generates.
FastModes parse_fast_modes(const FastModeArgs& args);

struct GenerateArgs {
  ModelArgs model;
  std::vector<std::string> classes;
  SamplingArgs sampling;
  std::string seed = "0";
  DeviceArgs device;
  FastModeArgs fast;
  std::string streams = "1", stream_params, adapter;
  std::string out, tokens_out;
  bool verbose = false, quiet = false;
};
void add_generate(CLI::App& app, GenerateArgs& args);
int run_generate(const GenerateArgs& args);

struct EditArgs {
  ModelArgs model;
  std::string image, input_tokens, box, mask;
  bool outpaint = false;
  std::vector<std::string> classes;
  SamplingArgs sampling;
  std::string seed = "0";
  DeviceArgs device;
  FastModeArgs fast;
  std::string streams = "1", adapter;
  std::string out, tokens_out;
  bool verbose = false, quiet = false;
};
void add_edit(CLI::App& app, EditArgs& args);
int run_edit(const EditArgs& args);

struct SampleArgs {
  ModelArgs model;
  std::string adapter, out;
  std::string class_range;
  std::vector<std::string> classes;
  std::string per_class = "50", seed = "0";
  SamplingArgs sampling{"1.5", "900", "0.96", "1"};  // the official FID protocol's
  std::string batch = "8", shard_size = "100";
  bool png = false;
  DeviceArgs device;
  FastModeArgs fast;
  bool verbose = false, quiet = false;
};
void add_sample(CLI::App& app, SampleArgs& args);
int run_sample(const SampleArgs& args);

struct ServeArgs {
  ModelArgs model;
  std::string adapter;
  std::string host = "127.0.0.1", port = "8080", max_batch = "16", max_wait_ms = "5", max_queue = "64";
  std::string join = "next-scale";
  std::string token_file;
  bool insecure_public = false;
  std::string tls_cert, tls_key;
  std::string io_timeout_s = "5";
  std::string max_connections = "128", max_request_ms = "0";
  DeviceArgs device;
  FastModeArgs fast;
  bool quiet = false;
};
void add_serve(CLI::App& app, ServeArgs& args);
int run_serve(const ServeArgs& args);

struct ReconstructArgs {
  std::string vae, image, out, tokens_out, patch_nums;
  DeviceArgs device;
  bool verbose = false;
};
void add_reconstruct(CLI::App& app, ReconstructArgs& args);
int run_reconstruct(const ReconstructArgs& args);

struct BenchArgs {
  ModelArgs model;
  std::string streams = "1,2,4,8", schedules = "batched,sequential", warmup = "1", repeats = "5";
  std::string peak_tflops = "0", peak_gbps = "0";
  std::string class_id = "0", seed = "0";
  SamplingArgs sampling;
  DeviceArgs device;
  FastModeArgs fast;
  std::string adapter;
  // --compare-parscale
  bool compare = false;
  std::string larger, prefix_tokens = "48", images = "1";
  std::string out;
  bool quiet = false;
};
void add_bench(CLI::App& app, BenchArgs& args);
int run_bench(const BenchArgs& args);

struct AdapterArgs {
  std::string model, preset, streams, prefix_tokens, smooth = "0.01", seed = "0", out;
};
void add_adapter(CLI::App& app, AdapterArgs& args);
int run_adapter(const AdapterArgs& args);

struct PrecisionErrorArgs {
  ModelArgs model;
  std::string images = "4", class_id = "0", seed = "0";
  SamplingArgs sampling;  // without --temperature
  DeviceArgs device;
  std::string out;
  bool quiet = false;
};
void add_precision_error(CLI::App& app, PrecisionErrorArgs& args);
int run_precision_error(const PrecisionErrorArgs& args);

struct InspectArgs {
  std::string file;
};
void add_inspect(CLI::App& app, InspectArgs& args);
int run_inspect(const InspectArgs& args);

// ---- shared helpers (common.cpp) ----

// Strict flag parsers: the whole text must be a number in range; otherwise a
// UsageError naming the flag and the accepted values.
uint64_t parse_u64(const std::string& flag, const std::string& text);
int parse_int(const std::string& flag, const std::string& text, int min_value);
double parse_double(const std::string& flag, const std::string& text, double min_value, double max_value);
// --cfg, --top-k, --top-p, --temperature, each checked like the flags above.
SamplingParams parse_sampling(const std::string& cfg, const std::string& top_k, const std::string& top_p,
                              const std::string& temperature);
// The same four as (prefix + name, text) pairs, for PNG metadata and reports.
std::vector<std::pair<std::string, std::string>> sampling_fields(const SamplingParams& s, const std::string& prefix);
// The tEXt metadata of a generated image, as `generate` writes it and
// `serve` must match byte for byte: `before` (an edit's fields), class,
// num_classes, seed, the sampling parameters, `model` (model_metadata and
// any adapter fields), varps:version, Software.
std::vector<std::pair<std::string, std::string>> image_png_text(
    const ImageRequest& r, int num_classes, const std::vector<std::pair<std::string, std::string>>& model,
    std::vector<std::pair<std::string, std::string>> before = {});
// "a,b,,c" → {"a", "b", "", "c"} (empty entries kept for the caller to refuse).
std::vector<std::string> split_commas(const std::string& text);
// "1,2,3" → {1, 2, 3}; each entry a positive integer.
std::vector<int> parse_int_list(const std::string& flag, const std::string& text);

// Shortest text that reads back as the same double ("4", "0.95").
std::string format_double(double v);
std::string join_ints(const std::vector<int>& v, const char* sep = ",");
std::string format_bytes(uint64_t bytes);  // "1234567 B (1.2 MiB)"

// Creates `dir` (and parents) if missing; throws varps::Error naming it when
// it cannot be created or is not a writable directory.
void prepare_output_dir(const std::filesystem::path& dir);
// Throws varps::Error naming `file` when its parent directory is missing.
void check_output_file_dir(const std::filesystem::path& file, const char* flag);

// Token maps as JSON: {"patch_nums": [...], "images": [{"class", "seed",
// "tokens": [[scale 0, row-major], ...]}]}. class/seed are null when absent.
struct TokenRecord {
  std::optional<int64_t> class_id;
  std::optional<uint64_t> seed;
  const TokenMaps* tokens = nullptr;
};
void write_tokens_json(const std::filesystem::path& path, const std::vector<int>& patch_nums,
                       const std::vector<TokenRecord>& images);
// The token maps of every image of such a file, checked against the model:
// its patch_nums, each map's size and each token's range (varps::Error
// naming the file, the image and the scale otherwise).
std::vector<TokenMaps> read_tokens_json(const std::filesystem::path& path, const VarConfig& vc);

// Notes and progress on stderr.
class Console {
 public:
  Console(bool verbose, bool quiet);
  bool verbose() const { return verbose_; }
  // "varps: note: ..." unless quiet.
  void note(const std::string& msg) const;
  // "varps: ..." unless quiet.
  void status(const std::string& msg) const;
  // "varps: ..." only with --verbose.
  void info(const std::string& msg) const;
  // Progress "scale i/n": shown when stderr is a terminal or with --verbose,
  // never with --quiet, and only once the task has run for over a second.
  // `next` names the step that follows, if any ("decoding").
  void start_task();
  void progress(const std::string& what, int done, int total, const std::string& next = "");
  void end_task();

 private:
  bool verbose_, quiet_, tty_;
  bool shown_ = false;
  std::chrono::steady_clock::time_point t0_;
};

double ms_since(std::chrono::steady_clock::time_point t0);

// A --class entry: an integer id, or "uncond" (nullopt). UsageError otherwise.
std::optional<int64_t> parse_class(const std::string& flag, const std::string& text);
// Checks a class id against the model (varps::Error naming the valid range).
int check_class(int64_t id, const VarConfig& vc);

// --stream-params: a JSON list with one object per stream; each may set
// "class" (id or "uncond"), "seed", "cfg", "top_k", "top_p", "temperature".
// Unset fields take `defaults` (class: default_class; seed: seed + index).
std::vector<ImageRequest> read_stream_params(const std::filesystem::path& file, const VarConfig& vc,
                                             std::optional<int> default_class, uint64_t seed,
                                             const SamplingParams& defaults);

// ---- which model a command runs (model_choice.cpp) ----

// --var/--vae checkpoints, a --preset of random weights, or (neither) the
// built-in trained model "fmnist" (its checkpoints, found on disk).
struct ModelChoice {
  bool from_files = false;
  std::string var, vae;
  std::string preset;   // when !from_files: "tiny", "d16", ...
  std::string builtin;  // the built-in model the files are, or empty
};
// Checks the flag combination (UsageError otherwise).
ModelChoice choose_model(const ModelArgs& args);
// The VAR configuration from headers only (cheap checks before loading).
VarConfig peek_var_config(const ModelChoice& m);
// Loads the model, saying on stderr when the weights are random. The VQVAE
// encoder is checked but loaded only `with_encoder` (generation only decodes).
Pipeline load_model(const ModelChoice& m, const PipelineOptions& opts, const Console& con, bool with_encoder = false);
// Attaches --refiner (a built-in name, a preset size beside a preset, or a
// checkpoint) when given.
void attach_refiner(Pipeline& pipe, const FastModeArgs& args, const ModelChoice& model, const Console& con);
// varps:fast (describe()) and varps:refiner, when a fast mode is on.
void add_fast_mode_metadata(std::vector<std::pair<std::string, std::string>>& fields, const FastModes& fast,
                            const FastModeArgs& args);
// What the weights are, for metadata: checkpoint paths or preset.
std::vector<std::pair<std::string, std::string>> model_metadata(const ModelChoice& m, const Pipeline& pipe);

// --adapter FILE, a ParScale adapter: `what` says what becomes its P
// streams in the command.
void add_adapter_flag(CLI::App* cmd, std::string& file, const std::string& what);
// The adapter the flag names, checked against the model's configuration
// before the model loads; nullopt without the flag.
std::optional<ParScaleAdapter> read_adapter(const std::string& file, const VarConfig& vc);
// Attaches it to the loaded model, saying so with --verbose.
void attach_adapter(Pipeline& pipe, const std::optional<ParScaleAdapter>& adapter, const std::string& file,
                    const Console& con);
// varps:adapter and varps:parscale_n, when the flag was given.
void add_adapter_metadata(std::vector<std::pair<std::string, std::string>>& fields, const std::string& file,
                          const Pipeline& pipe);

}  // namespace varps::cli
