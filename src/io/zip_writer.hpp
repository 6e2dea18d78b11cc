#pragma once
// Writes an uncompressed (STORED) zip, the layout torch.save uses. For tests
// and tooling that need PyTorch-style archives without PyTorch.
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace varps::io {

// Records are (name, bytes), written in order. Throws varps::Error naming
// the path on failure.
void write_stored_zip(const std::filesystem::path& path,
                      const std::vector<std::pair<std::string, std::string>>& records);

}  // namespace varps::io
