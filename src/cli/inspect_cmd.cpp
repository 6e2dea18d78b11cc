// `varps inspect`: a checkpoint's format, inferred model and tensor table,
// from its headers (plus the tiny lvl_1L buffer that infer_var_config reads;
// a ParScale adapter, small, is read whole to check it).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>

#include "cli/commands.hpp"
#include "varps/adapter.hpp"
#include "varps/checkpoint.hpp"
#include "varps/config.hpp"
#include "varps/error.hpp"

namespace varps::cli {

void add_inspect(CLI::App& app, InspectArgs& a) {
  CLI::App* cmd = app.add_subcommand(
      "inspect", "Show a checkpoint's format, inferred model configuration and tensors (reads headers only)");
  cmd->add_option("FILE", a.file, "Checkpoint (.pth PyTorch zip or .safetensors)")->type_name("")->required();
  cmd->footer(kExitStatusHelp);
}

int run_inspect(const InspectArgs& a) {
  const Checkpoint ckpt = Checkpoint::open(a.file);
  const auto& recs = ckpt.tensors();
  uint64_t total = 0;
  for (const TensorRecord& r : recs) total += static_cast<uint64_t>(numel(r.shape)) * dtype_size(r.dtype);

  std::printf("file:      %s\n", ckpt.path().c_str());
  std::printf("format:    %s\n", format_name(ckpt.format()));
  std::printf("tensors:   %zu\n", recs.size());
  std::printf("bytes:     %s\n", format_bytes(total).c_str());
  if (ckpt.metadata().empty()) {
    std::printf("metadata:  (none)\n");
  } else {
    std::printf("metadata:\n");
    for (const auto& [k, v] : ckpt.metadata()) std::printf("  %s: %s\n", k.c_str(), v.c_str());
  }

  std::string var_err, vae_err;
  bool known = false;
  try {
    const VarConfig vc = infer_var_config(ckpt);
    std::printf("model:     %s\n", vc.describe().c_str());
    known = true;
  } catch (const Error& e) {
    var_err = e.what();
  }
  if (!known) {
    try {
      const VaeConfig vc = infer_vae_config(ckpt);
      std::printf("model:     %s\n", vc.describe().c_str());
      known = true;
    } catch (const Error& e) {
      vae_err = e.what();
    }
  }
  std::string adapter_err;
  if (!known && ckpt.metadata().count("parscale_n")) {
    try {
      const ParScaleAdapter ad = ParScaleAdapter::from_checkpoint(ckpt);
      std::printf("model:     ParScale adapter: P %d streams, T %d prefix tokens, smoothing %s, depth %d, heads %lld x "
                  "%lld, C %lld\n",
                  ad.streams, ad.prefix_tokens, format_double(ad.smooth).c_str(), ad.depth(),
                  static_cast<long long>(ad.heads()), static_cast<long long>(ad.head_dim()),
                  static_cast<long long>(ad.embed_dim()));
      known = true;
    } catch (const Error& e) {
      adapter_err = e.what();
    }
  }
  if (!known) {
    std::printf("model:     unknown model type\n");
    std::printf("  as VAR:   %s\n", var_err.c_str());
    std::printf("  as VQVAE: %s\n", vae_err.c_str());
    if (!adapter_err.empty()) std::printf("  as ParScale adapter: %s\n", adapter_err.c_str());
  }

  size_t wn = 4, wd = 5, ws = 5;
  std::vector<std::string> shapes;
  for (const TensorRecord& r : recs) {
    shapes.push_back(shape_str(r.shape));
    wn = std::max(wn, r.name.size());
    wd = std::max(wd, std::string(dtype_name(r.dtype)).size());
    ws = std::max(ws, shapes.back().size());
  }
  std::printf("\n%-*s  %-*s  %-*s  %12s\n", static_cast<int>(wn), "name", static_cast<int>(wd), "dtype",
              static_cast<int>(ws), "shape", "bytes");
  for (size_t i = 0; i < recs.size(); ++i) {
    const TensorRecord& r = recs[i];
    std::printf("%-*s  %-*s  %-*s  %12llu\n", static_cast<int>(wn), r.name.c_str(), static_cast<int>(wd),
                dtype_name(r.dtype), static_cast<int>(ws), shapes[i].c_str(),
                static_cast<unsigned long long>(numel(r.shape)) * dtype_size(r.dtype));
  }
  return 0;
}

}  // namespace varps::cli
