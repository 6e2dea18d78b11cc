// --device, --precision and --threads: where a command runs the model.
#include <CLI/CLI.hpp>

#include "cli/commands.hpp"

namespace varps::cli {

void add_device_flags(CLI::App* cmd, DeviceArgs& a) {
  cmd->add_option("--device", a.device,
                  "Where the model runs: cpu, or cuda (an NVIDIA GPU; needs a build configured with "
                  "-DVARPS_CUDA=ON)")
      ->type_name("NAME")
      ->capture_default_str();
  cmd->add_option("--precision", a.precision,
                  "Matrix-product operands: fp32, or bf16/fp16 with float32 accumulation (cuda only; every other "
                  "op stays float32)")
      ->type_name("P")
      ->capture_default_str();
  cmd->add_option("--threads,-j", a.threads, "CPU threads; 0 uses all cores")->type_name("N")->capture_default_str();
}

PipelineOptions parse_device(const DeviceArgs& a) {
  PipelineOptions po;
  po.threads = parse_int("--threads", a.threads, 0);
  if (a.device != "cpu" && a.device != "cuda")
    throw UsageError("invalid value '" + a.device + "' for --device: expected cpu or cuda");
  if (a.precision != "fp32" && a.precision != "bf16" && a.precision != "fp16")
    throw UsageError("invalid value '" + a.precision + "' for --precision: expected fp32, bf16 or fp16");
  if (a.device == "cpu" && a.precision != "fp32")
    throw UsageError("--precision " + a.precision + " needs --device cuda (the CPU computes in fp32)");
  po.device = a.device;
  po.precision = a.precision;
  return po;
}

}  // namespace varps::cli
