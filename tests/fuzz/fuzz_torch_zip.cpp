// The PyTorch zip reader (src/io/torch_zip.cpp, through Checkpoint::open),
// then every tensor read. An input starting like a zip is the file itself;
// anything else is a list of records, "name\ncontent" separated by
// kRecordSeparator, written as a valid stored zip first, so that mutations
// reach the archive's logic (stems, storage records, byte order, tensor
// extents) instead of stopping at libzip's CRC check.
#include <algorithm>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fuzz_support.hpp"
#include "io/zip_writer.hpp"
#include "varps/checkpoint.hpp"

namespace {

constexpr std::string_view kRecordSeparator = "\n#REC#\n";

std::vector<std::pair<std::string, std::string>> split_records(std::string_view in) {
  std::vector<std::pair<std::string, std::string>> records;
  while (!in.empty()) {
    const size_t end = std::min(in.find(kRecordSeparator), in.size());
    const std::string_view rec = in.substr(0, end);
    const size_t nl = std::min(rec.find('\n'), rec.size());
    records.emplace_back(std::string(rec.substr(0, nl)), std::string(rec.substr(std::min(nl + 1, rec.size()))));
    in.remove_prefix(std::min(end + kRecordSeparator.size(), in.size()));
  }
  return records;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  std::filesystem::path path;
  if (in.starts_with("PK")) {
    path = varps::fuzz::input_file(data, size, "fuzz.pth");
  } else {
    path = varps::fuzz::scratch_dir() / "records.pth";
    try {
      varps::io::write_stored_zip(path, split_records(in));
    } catch (const varps::Error&) {
      return 0;  // names libzip will not store (empty, repeated): not the reader's input
    }
  }
  varps::fuzz::only_varps_errors([&] {
    varps::fuzz::read_every_tensor(varps::Checkpoint::open(path));
  });
  return 0;
}
