// --adapter: every command that runs ParScale streams registers, checks,
// attaches and records it here.
#include <CLI/CLI.hpp>

#include "cli/commands.hpp"
#include "varps/adapter.hpp"

namespace varps::cli {

void add_adapter_flag(CLI::App* cmd, std::string& file, const std::string& what) {
  cmd->add_option("--adapter", file, "ParScale adapter (safetensors): " + what)->type_name("FILE");
}

std::optional<ParScaleAdapter> read_adapter(const std::string& file, const VarConfig& vc) {
  if (file.empty()) return std::nullopt;
  ParScaleAdapter adapter = ParScaleAdapter::load(file);
  adapter.check_fits(vc);
  return adapter;
}

void attach_adapter(Pipeline& pipe, const std::optional<ParScaleAdapter>& adapter, const std::string& file,
                    const Console& con) {
  if (!adapter) return;
  pipe.attach_adapter(*adapter);
  con.info("adapter: " + file + " (P=" + std::to_string(adapter->streams) + " streams per image, T=" +
           std::to_string(adapter->prefix_tokens) + " prefix tokens, s=" + format_double(adapter->smooth) + ")");
}

void add_adapter_metadata(std::vector<std::pair<std::string, std::string>>& fields, const std::string& file,
                          const Pipeline& pipe) {
  if (file.empty()) return;
  fields.emplace_back("varps:adapter", file);
  fields.emplace_back("varps:parscale_n", std::to_string(pipe.adapter_streams()));
}

}  // namespace varps::cli
