#pragma once
// The per-format readers behind varps::Checkpoint. Each turns one file format
// into the common TensorRecord list; Checkpoint does the rest (lookup,
// conversion, gathering strided data).
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "io/file.hpp"
#include "varps/checkpoint.hpp"

namespace varps::io {

struct CheckpointIndex {
  std::vector<TensorRecord> records;  // in the checkpoint's order
  std::map<std::string, std::string> metadata;
};

// safetensors: validates the whole header against the file size.
CheckpointIndex read_safetensors_index(const File& file);
// An open PyTorch zip, kept by its Checkpoint so tensor reads do not re-parse
// the archive's directory each time; reads through it are serialised.
class ZipArchive;

// PyTorch zip: parses <stem>/data.pkl and checks every storage record; hands
// back the open archive for later reads.
CheckpointIndex read_torch_zip_index(const std::filesystem::path& path, std::shared_ptr<ZipArchive>* archive);

// Random access to the bytes that hold tensors: the file itself for
// safetensors, one archive record for PyTorch zips.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Reads exactly n bytes at offset or throws varps::Error.
  virtual void read_at(uint64_t offset, void* dst, size_t n) = 0;
};

std::unique_ptr<ByteSource> open_zip_record(std::shared_ptr<ZipArchive> archive, const std::string& entry);

}  // namespace varps::io
