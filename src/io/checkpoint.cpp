// Checkpoint: format sniffing, lookup, and reading tensor data straight into
// the destination (converting dtypes and gathering strided layouts).
#include "varps/checkpoint.hpp"

#include <cstring>

#include "io/dtype.hpp"
#include "io/file.hpp"
#include "io/layout.hpp"
#include "io/readers.hpp"
#include "varps/error.hpp"

namespace varps {

// The one place that fills (and hands out) a Checkpoint's private fields.
struct CheckpointBuilder {
  static const std::shared_ptr<io::ZipArchive>& zip(const Checkpoint& c) { return c.zip_; }

  static Checkpoint build(const std::filesystem::path& path, CheckpointFormat format, io::CheckpointIndex index,
                          std::shared_ptr<io::ZipArchive> zip = nullptr) {
    Checkpoint c;
    c.path_ = path;
    c.format_ = format;
    c.zip_ = std::move(zip);
    c.records_ = std::move(index.records);
    c.metadata_ = std::move(index.metadata);
    for (size_t i = 0; i < c.records_.size(); ++i) {
      const bool inserted = c.index_.emplace(c.records_[i].name, i).second;
      VARPS_CHECK(inserted, "readers refuse duplicate tensor names: " + c.records_[i].name);
    }
    return c;
  }
};

namespace {

class FileSource final : public io::ByteSource {
 public:
  explicit FileSource(const std::filesystem::path& path) : file_(io::File::open_read(path)) {}
  void read_at(uint64_t offset, void* dst, size_t n) override { file_.read_exact(offset, dst, n, "tensor data"); }

 private:
  io::File file_;
};

std::string describe(const Checkpoint& c, const TensorRecord& rec) {
  return "tensor '" + rec.name + "' in " + io::quoted(c.path());
}

// Bytes from the first element to the end of the last. Checked before any
// allocation because callers may hand in records of their own.
uint64_t checked_span(const Checkpoint& c, const TensorRecord& rec) {
  const std::optional<uint64_t> extent = io::strided_extent(rec.shape, rec.strides);
  uint64_t span = 0;
  if (!extent || __builtin_mul_overflow(*extent, dtype_size(rec.dtype), &span) || span > rec.storage_bytes) {
    throw Error(describe(c, rec) + ": shape " + shape_str(rec.shape) + " / strides " + shape_str(rec.strides) +
                " do not fit its " + std::to_string(rec.storage_bytes) + "-byte storage");
  }
  return span;
}

// Reads the tensor's elements, as stored (rec.dtype), in row-major order into
// dst (numel * dtype_size bytes).
void read_raw(const Checkpoint& c, const TensorRecord& rec, uint8_t* dst) {
  const size_t esize = dtype_size(rec.dtype);
  const uint64_t span = checked_span(c, rec);
  if (span == 0) return;
  std::unique_ptr<io::ByteSource> src;
  if (c.format() == CheckpointFormat::Safetensors) {
    src = std::make_unique<FileSource>(c.path());
  } else {
    const std::shared_ptr<io::ZipArchive>& zip = CheckpointBuilder::zip(c);
    VARPS_CHECK(zip != nullptr, "a PyTorch checkpoint keeps its archive open");
    src = io::open_zip_record(zip, rec.entry);
  }
  try {
    if (io::is_contiguous(rec.shape, rec.strides)) {
      src->read_at(rec.offset, dst, span);
    } else {
      std::vector<uint8_t> raw(span);
      src->read_at(rec.offset, raw.data(), span);
      io::gather_strided(raw.data(), rec.shape, rec.strides, esize, dst);
    }
  } catch (const Error& e) {
    throw Error(describe(c, rec) + ": " + e.what());
  }
}

// The tensor as T: read straight into the result when stored as `native`,
// otherwise through a staging buffer and `convert`.
template <typename T, typename Convert>
HostTensor<T> read_as(const Checkpoint& c, const TensorRecord& rec, DType native, Convert convert) {
  checked_span(c, rec);  // before allocating: records may come from callers
  HostTensor<T> out(rec.shape);
  if (rec.dtype == native) {
    read_raw(c, rec, reinterpret_cast<uint8_t*>(out.data.data()));
  } else {
    std::vector<uint8_t> raw(out.data.size() * dtype_size(rec.dtype));
    read_raw(c, rec, raw.data());
    convert(rec.dtype, raw.data(), out.data.size(), out.data.data());
  }
  return out;
}

const TensorRecord& require(const Checkpoint& c, const std::string& name) {
  const TensorRecord* rec = c.find(name);
  if (rec == nullptr) throw Error("tensor '" + name + "' not found in " + io::quoted(c.path()));
  return *rec;
}

}  // namespace

Checkpoint Checkpoint::open(const std::filesystem::path& path) {
  std::error_code ec;
  const std::filesystem::file_status st = std::filesystem::status(path, ec);
  if (st.type() == std::filesystem::file_type::not_found) {
    throw Error("checkpoint " + io::quoted(path) + " does not exist");
  }
  if (st.type() == std::filesystem::file_type::directory) {
    throw Error("checkpoint " + io::quoted(path) + " is a directory, not a file");
  }
  const io::File file = io::File::open_read(path);
  if (file.size() == 0) throw Error("checkpoint " + io::quoted(path) + " is empty (0 bytes)");

  unsigned char magic[9] = {};
  const size_t n = file.size() < sizeof magic ? static_cast<size_t>(file.size()) : sizeof magic;
  file.read_exact(0, magic, n, "the file signature");
  // Zip local header, or the end record of an archive with no entries.
  if (n >= 4 && magic[0] == 'P' && magic[1] == 'K' &&
      ((magic[2] == 3 && magic[3] == 4) || (magic[2] == 5 && magic[3] == 6))) {
    std::shared_ptr<io::ZipArchive> zip;
    io::CheckpointIndex index = io::read_torch_zip_index(path, &zip);
    return CheckpointBuilder::build(path, CheckpointFormat::TorchZip, std::move(index), std::move(zip));
  }
  if (n >= 2 && magic[0] == 0x80 && magic[1] <= 5) {
    throw Error("checkpoint " + io::quoted(path) +
                " is a legacy (pre-1.6) PyTorch pickle; re-save it with torch >= 1.6 or convert it to safetensors");
  }
  // safetensors: 8-byte length, then a JSON header that must start with '{'.
  if (n < 9 || magic[8] != '{') {
    throw Error("checkpoint " + io::quoted(path) + " is neither a PyTorch zip nor a safetensors file");
  }
  return CheckpointBuilder::build(path, CheckpointFormat::Safetensors, io::read_safetensors_index(file));
}

const TensorRecord* Checkpoint::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &records_[it->second];
}

Tensor Checkpoint::read_f32(const TensorRecord& rec) const {
  if (!io::is_floating(rec.dtype)) {
    throw Error(describe(*this, rec) + " has dtype " + dtype_name(rec.dtype) +
                "; expected a floating-point tensor (F32, F64, F16, BF16)");
  }
  return read_as<float>(*this, rec, DType::F32, io::convert_to_f32);
}

Tensor Checkpoint::read_f32(const std::string& name) const { return read_f32(require(*this, name)); }

TensorI64 Checkpoint::read_i64(const TensorRecord& rec) const {
  if (io::is_floating(rec.dtype)) {
    throw Error(describe(*this, rec) + " has dtype " + dtype_name(rec.dtype) + "; expected an integer tensor");
  }
  return read_as<int64_t>(*this, rec, DType::I64, io::convert_to_i64);
}

TensorI64 Checkpoint::read_i64(const std::string& name) const { return read_i64(require(*this, name)); }

}  // namespace varps
