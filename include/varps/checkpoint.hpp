#pragma once
// Checkpoint readers. One reader per format (PyTorch zip + pickle,
// safetensors), all producing the same TensorRecord. Opening a checkpoint
// reads only its headers; tensor data is read on demand, straight into the
// destination buffer, so a model loads without a second copy in memory.
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "varps/tensor.hpp"

namespace varps {

namespace io {
class ZipArchive;
}

enum class DType { F32, F64, F16, BF16, I64, I32, I16, I8, U8, Bool };
const char* dtype_name(DType d);  // "F32", "I64", ... (safetensors spelling)
size_t dtype_size(DType d);

enum class CheckpointFormat { TorchZip, Safetensors };
const char* format_name(CheckpointFormat f);  // "pytorch-zip", "safetensors"

// Where one tensor's bytes live. For safetensors `entry` is empty and
// `offset` is an absolute file offset; for PyTorch zips `entry` names the
// storage record inside the archive and `offset` is a byte offset within it.
struct TensorRecord {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
  std::vector<int64_t> strides;  // in elements; contiguous row-major unless the pickle said otherwise
  std::string entry;
  uint64_t offset = 0;
  uint64_t storage_bytes = 0;  // bytes available from `offset` to the end of the storage
};

class Checkpoint {
 public:
  // Throws varps::Error naming the file and what is wrong (never aborts).
  static Checkpoint open(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return path_; }
  CheckpointFormat format() const { return format_; }
  const std::vector<TensorRecord>& tensors() const { return records_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const TensorRecord* find(const std::string& name) const;  // nullptr when absent
  bool contains(const std::string& name) const { return find(name) != nullptr; }

  // Converts F32/F16/BF16/F64 to float32; throws for integer dtypes.
  Tensor read_f32(const TensorRecord& rec) const;
  Tensor read_f32(const std::string& name) const;
  // Converts any integer dtype to int64; throws for float dtypes.
  TensorI64 read_i64(const TensorRecord& rec) const;
  TensorI64 read_i64(const std::string& name) const;

 private:
  std::filesystem::path path_;
  CheckpointFormat format_ = CheckpointFormat::Safetensors;
  std::vector<TensorRecord> records_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
  std::shared_ptr<io::ZipArchive> zip_;  // open PyTorch zip, shared by reads and copies
  friend struct CheckpointBuilder;
};

// Writes float32 / int64 tensors as safetensors (for tests and tooling).
struct NamedTensor {
  std::string name;
  const Tensor* f32 = nullptr;
  const TensorI64* i64 = nullptr;
};
void write_safetensors(const std::filesystem::path& path, const std::vector<NamedTensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace varps
