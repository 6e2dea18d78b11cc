// --device, --precision, --cuda-graphs and --threads: where a command runs the model.
#include <CLI/CLI.hpp>

#include "cli/commands.hpp"
#include "varps/error.hpp"
#include "varps/pipeline.hpp"

namespace varps::cli {

void add_device_flags(CLI::App* cmd, DeviceArgs& a) {
  cmd->add_option("--device", a.device,
                  "Where the model runs: cpu, or cuda (an NVIDIA GPU; needs a build configured with "
                  "-DVARPS_CUDA=ON)")
      ->type_name("NAME")
      ->capture_default_str();
  cmd->add_option("--precision", a.precision,
                  "Matrix-product operands: fp32; bf16 (cpu and cuda: weights and activations rounded to bf16, "
                  "float32 sums); int8 (cpu only: weights quantised per output channel, activations per row, "
                  "int32 sums); fp16 (cuda only). On the CPU the transformer's x·wᵀ products take them, the attention "
                  "and the decoder's large direct convolutions take bf16 with either, and everything else stays "
                  "float32. The error of each against fp32 is in docs/tolerances.md")
      ->type_name("P")
      ->capture_default_str();
  cmd->add_option("--cuda-graphs", a.cuda_graphs,
                  "cuda: on records each scale's steps (transformer, sampling, residual path) and each decoder "
                  "pass once as CUDA graphs and replays them for later requests of the same shape (from the third "
                  "on); off launches every op (to compare, or debug)")
      ->type_name("on|off")
      ->capture_default_str();
  cmd->add_option("--threads,-j", a.threads, "CPU threads; 0 uses all cores")->type_name("N")->capture_default_str();
}

PipelineOptions parse_device(const DeviceArgs& a) {
  PipelineOptions po;
  po.threads = parse_int("--threads", a.threads, 0);
  // The library's own check, reported as the usage error it is here.
  try {
    check_backend_choice(a.device, a.precision);
  } catch (const Error& e) {
    throw UsageError(std::string("--device/--precision: ") + e.what());
  }
  po.device = a.device;
  po.precision = a.precision;
  if (a.cuda_graphs != "on" && a.cuda_graphs != "off")
    throw UsageError("--cuda-graphs: expected on or off, got '" + a.cuda_graphs + "'");
  po.cuda_graphs = a.cuda_graphs == "on";
  return po;
}

}  // namespace varps::cli
