// PyTorch zip checkpoints (torch.save since 1.6): records under one
// top-level stem (`var/`, `archive/`, ...): <stem>/data.pkl describes the
// state dict, <stem>/data/<key> holds each storage's raw little-endian bytes.
// Extra records (version, byteorder, .data/serialization_id) are ignored,
// except that a big-endian byteorder is refused.
#include <zip.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string_view>

#include "io/layout.hpp"
#include "io/pickle.hpp"
#include "io/readers.hpp"
#include "varps/error.hpp"

namespace varps::io {
namespace {

// State-dict pickles take ~150 bytes per tensor; the cap bounds the memory a
// hostile pickle can make the reader use.
constexpr uint64_t kMaxPickleBytes = 32ull << 20;
// Deflate expands at most ~1032:1, so a deflated record cannot hold more than
// this many times its compressed bytes (plus a little for tiny records). The
// uncompressed size is only what the zip's headers declare, and a tensor is
// allocated from it before its record is read.
constexpr uint64_t kMaxInflateRatio = 1032;
constexpr uint64_t kInflateSlack = 4096;

std::string zip_error_text(int code) {
  zip_error_t e;
  zip_error_init_with_code(&e, code);
  std::string s = zip_error_strerror(&e);
  zip_error_fini(&e);
  return s;
}

// A read-only libzip archive; zip_discard never writes anything back.
class Archive {
 public:
  Archive(const std::filesystem::path& path, int flags) : path_(path) {
    int err = 0;
    za_ = zip_open(path.c_str(), flags, &err);
    if (za_ == nullptr) {
      // The file starts like a zip, so a missing or inconsistent directory
      // almost always means a truncated or damaged download.
      const bool damaged = err == ZIP_ER_NOZIP || err == ZIP_ER_INCONS;
      throw Error("cannot open " + quoted(path) + " as a PyTorch zip checkpoint: " + zip_error_text(err) +
                  (damaged ? " (truncated or corrupted file?)" : ""));
    }
  }
  Archive(const Archive&) = delete;
  Archive& operator=(const Archive&) = delete;
  ~Archive() { zip_discard(za_); }

  zip_t* get() const { return za_; }
  const std::filesystem::path& path() const { return path_; }
  std::string error() const { return zip_strerror(za_); }

  std::optional<zip_uint64_t> locate(const std::string& name) const {
    zip_int64_t i = zip_name_locate(za_, name.c_str(), ZIP_FL_ENC_RAW);
    if (i < 0) return std::nullopt;
    return static_cast<zip_uint64_t>(i);
  }

  // Size of an entry's uncompressed data; refuses encrypted entries, and
  // compressed ones whose declared size their compressed bytes cannot hold.
  uint64_t entry_size(zip_uint64_t index, const std::string& name) const {
    zip_stat_t st;
    zip_stat_init(&st);
    const zip_uint64_t needed = ZIP_STAT_SIZE | ZIP_STAT_COMP_SIZE | ZIP_STAT_COMP_METHOD;
    if (zip_stat_index(za_, index, 0, &st) != 0 || (st.valid & needed) != needed) {
      throw Error("cannot stat record '" + name + "' in " + quoted(path_) + ": " + error());
    }
    const std::string ctx = "record '" + name + "' in " + quoted(path_);
    if ((st.valid & ZIP_STAT_ENCRYPTION_METHOD) && st.encryption_method != ZIP_EM_NONE) {
      throw Error(ctx + " is encrypted");
    }
    if (st.comp_method != ZIP_CM_STORE && st.comp_method != ZIP_CM_DEFLATE) {
      throw Error(ctx + " uses compression method " + std::to_string(st.comp_method) +
                  "; PyTorch checkpoints are stored uncompressed (or deflated)");
    }
    if (st.comp_method == ZIP_CM_DEFLATE && st.comp_size <= (UINT64_MAX - kInflateSlack) / kMaxInflateRatio &&
        st.size > kMaxInflateRatio * st.comp_size + kInflateSlack) {
      throw Error(ctx + " declares " + std::to_string(st.size) + " bytes, more than its " +
                  std::to_string(st.comp_size) + " compressed bytes can hold (deflate expands at most " +
                  std::to_string(kMaxInflateRatio) + ":1; a damaged or forged file)");
    }
    return st.size;
  }

 private:
  std::filesystem::path path_;
  zip_t* za_ = nullptr;
};

struct ZipFileCloser {
  void operator()(zip_file_t* f) const { zip_fclose(f); }
};
using ZipFilePtr = std::unique_ptr<zip_file_t, ZipFileCloser>;

ZipFilePtr open_entry(const Archive& a, zip_uint64_t index, const std::string& name) {
  ZipFilePtr f(zip_fopen_index(a.get(), index, 0));
  if (!f) throw Error("cannot open record '" + name + "' in " + quoted(a.path()) + ": " + a.error());
  return f;
}

void read_fully(zip_file_t* f, void* dst, uint64_t n, const Archive& a, const std::string& name) {
  auto* out = static_cast<unsigned char*>(dst);
  while (n > 0) {
    zip_int64_t got = zip_fread(f, out, n);
    if (got <= 0) {
      throw Error("cannot read record '" + name + "' in " + quoted(a.path()) + ": " +
                  (got < 0 ? std::string(zip_file_strerror(f)) : std::string("record ends early")));
    }
    out += got;
    n -= static_cast<uint64_t>(got);
  }
}

std::string read_record(const Archive& a, zip_uint64_t index, const std::string& name, uint64_t max_bytes) {
  const uint64_t size = a.entry_size(index, name);
  if (size > max_bytes) {
    throw Error("record '" + name + "' in " + quoted(a.path()) + " is " + std::to_string(size) +
                " bytes, more than the " + std::to_string(max_bytes) + "-byte limit");
  }
  std::string data(size, '\0');
  ZipFilePtr f = open_entry(a, index, name);
  read_fully(f.get(), data.data(), size, a, name);
  return data;
}

// The single "<stem>/data.pkl" at the top level names the stem.
std::string find_stem(const Archive& a) {
  const zip_int64_t n = zip_get_num_entries(a.get(), 0);
  std::vector<std::string> stems;
  for (zip_int64_t i = 0; i < n; ++i) {
    const char* raw = zip_get_name(a.get(), static_cast<zip_uint64_t>(i), ZIP_FL_ENC_RAW);
    if (raw == nullptr) continue;
    const std::string_view name(raw);
    constexpr std::string_view suffix = "/data.pkl";
    if (name.size() > suffix.size() && name.ends_with(suffix)) {
      const std::string_view stem = name.substr(0, name.size() - suffix.size());
      if (stem.find('/') == std::string_view::npos) stems.emplace_back(stem);
    }
  }
  if (stems.empty()) {
    throw Error(quoted(a.path()) + " is a zip archive without a <name>/data.pkl record; not a PyTorch checkpoint");
  }
  if (stems.size() > 1) {
    throw Error(quoted(a.path()) + " holds several data.pkl records ('" + stems[0] + "/', '" + stems[1] +
                "/'); expected one PyTorch checkpoint");
  }
  return stems[0];
}

// Records under <stem>/data/: the storages a state dict's tensors can use.
uint64_t count_storage_records(const Archive& a, const std::string& stem) {
  const std::string prefix = stem + "/data/";
  const zip_int64_t n = zip_get_num_entries(a.get(), 0);
  uint64_t count = 0;
  for (zip_int64_t i = 0; i < n; ++i) {
    const char* raw = zip_get_name(a.get(), static_cast<zip_uint64_t>(i), ZIP_FL_ENC_RAW);
    if (raw != nullptr && std::string_view(raw).starts_with(prefix)) ++count;
  }
  return count;
}

void check_byteorder(const Archive& a, const std::string& stem) {
  const std::string name = stem + "/byteorder";
  const std::optional<zip_uint64_t> index = a.locate(name);
  if (!index) return;  // written only by newer torch; absent means little-endian
  std::string order = read_record(a, *index, name, 16);
  while (!order.empty() && (order.back() == '\n' || order.back() == ' ')) order.pop_back();
  if (order == "little") return;
  if (order == "big")
    throw Error(quoted(a.path()) + " is a big-endian PyTorch checkpoint; only little-endian is supported");
  throw Error(quoted(a.path()) + " has an unrecognised byteorder record");
}

struct StorageEntry {
  std::string name;
  uint64_t size = 0;
};

// Checks that the tensor lies inside both the storage the pickle declares
// and the record actually stored, and builds its record.
TensorRecord make_record(const PickledTensor& t, const StorageEntry& entry, const std::string& ctx) {
  const std::string tctx = ctx + "tensor '" + t.name + "': ";
  const uint64_t esize = dtype_size(t.dtype);
  const std::optional<uint64_t> extent = strided_extent(t.shape, t.strides);
  if (!extent) {
    throw Error(tctx + "size " + shape_str(t.shape) + " with stride " + shape_str(t.strides) +
                " is invalid or overflows");
  }
  uint64_t declared_bytes = 0, end = 0;
  if (__builtin_mul_overflow(t.storage_numel, esize, &declared_bytes) || declared_bytes > entry.size) {
    throw Error(tctx + "storage record '" + entry.name + "' holds " + std::to_string(entry.size) +
                " bytes, less than the " + std::to_string(t.storage_numel) + " " + dtype_name(t.dtype) +
                " elements the pickle declares");
  }
  if (__builtin_add_overflow(static_cast<uint64_t>(t.storage_offset), *extent, &end) || end > t.storage_numel) {
    throw Error(tctx + "offset " + std::to_string(t.storage_offset) + " + extent " + std::to_string(*extent) +
                " of size " + shape_str(t.shape) + " / stride " + shape_str(t.strides) + " exceeds its storage of " +
                std::to_string(t.storage_numel) + " elements ('" + entry.name + "')");
  }
  TensorRecord rec;
  rec.name = t.name;
  rec.dtype = t.dtype;
  rec.shape = t.shape;
  rec.strides = t.strides;
  rec.entry = entry.name;
  rec.offset = static_cast<uint64_t>(t.storage_offset) * esize;
  rec.storage_bytes = entry.size - rec.offset;
  return rec;
}

}  // namespace

class ZipArchive {
 public:
  explicit ZipArchive(const std::filesystem::path& path) : archive(path, ZIP_RDONLY | ZIP_CHECKCONS) {}
  Archive archive;
  std::mutex mutex;  // a zip_t serves one reader at a time
};

namespace {

class ZipRecordSource final : public ByteSource {
 public:
  ZipRecordSource(std::shared_ptr<ZipArchive> zip, const std::string& entry) : zip_(std::move(zip)), name_(entry) {
    std::lock_guard<std::mutex> lock(zip_->mutex);
    const Archive& a = zip_->archive;
    const std::optional<zip_uint64_t> index = a.locate(entry);
    if (!index) throw Error("record '" + entry + "' is missing from " + quoted(a.path()));
    index_ = *index;
    size_ = a.entry_size(index_, entry);
  }

  void read_at(uint64_t offset, void* dst, size_t n) override {
    std::lock_guard<std::mutex> lock(zip_->mutex);
    const Archive& a = zip_->archive;
    uint64_t end = 0;
    if (__builtin_add_overflow(offset, uint64_t{n}, &end) || end > size_) {
      throw Error("bytes [" + std::to_string(offset) + ", +" + std::to_string(n) + ") lie outside record '" + name_ +
                  "' (" + std::to_string(size_) + " bytes) of " + quoted(a.path()));
    }
    ZipFilePtr f = open_entry(a, index_, name_);
    if (offset > 0 && zip_fseek(f.get(), static_cast<zip_int64_t>(offset), SEEK_SET) != 0) {
      // libzip seeks only in stored (uncompressed) records; for compressed
      // ones, decompress and discard up to the offset.
      f = open_entry(a, index_, name_);
      std::vector<unsigned char> scratch(std::min<uint64_t>(offset, 1 << 20));
      for (uint64_t left = offset; left > 0;) {
        const uint64_t chunk = std::min<uint64_t>(left, scratch.size());
        read_fully(f.get(), scratch.data(), chunk, a, name_);
        left -= chunk;
      }
    }
    read_fully(f.get(), dst, n, a, name_);
  }

 private:
  std::shared_ptr<ZipArchive> zip_;
  std::string name_;
  zip_uint64_t index_ = 0;
  uint64_t size_ = 0;
};

}  // namespace

CheckpointIndex read_torch_zip_index(const std::filesystem::path& path, std::shared_ptr<ZipArchive>* archive) {
  // CHECKCONS cross-checks the central directory against the local headers,
  // which catches truncated and corrupted archives up front.
  auto zip = std::make_shared<ZipArchive>(path);
  const Archive& a = zip->archive;
  const std::string stem = find_stem(a);
  check_byteorder(a, stem);

  const std::string pkl_name = stem + "/data.pkl";
  const std::string pickle = read_record(a, *a.locate(pkl_name), pkl_name, kMaxPickleBytes);
  const uint64_t storage_records = count_storage_records(a, stem);
  const std::vector<PickledTensor> tensors = parse_state_dict_pickle(
      std::span(reinterpret_cast<const uint8_t*>(pickle.data()), pickle.size()), pkl_name + " in " + quoted(path),
      PickleLimits::for_storage_records(storage_records));

  const std::string ctx = "PyTorch checkpoint " + quoted(path) + ": ";
  // torch.save writes a storage record only for a storage a tensor uses.
  if (tensors.empty() && storage_records > 0) {
    throw Error(ctx + "the state dict in " + pkl_name + " holds no tensors, yet the archive has " +
                std::to_string(storage_records) + " storage records under " + stem + "/data/");
  }
  std::map<std::string, StorageEntry> storages;  // by key; tensors often share one
  CheckpointIndex index;
  index.records.reserve(tensors.size());
  for (const PickledTensor& t : tensors) {
    auto it = storages.find(t.storage_key);
    if (it == storages.end()) {
      StorageEntry e;
      e.name = stem + "/data/" + t.storage_key;
      const std::optional<zip_uint64_t> i = a.locate(e.name);
      if (!i) {
        throw Error(ctx + "tensor '" + t.name + "' uses storage '" + t.storage_key + "' but record '" + e.name +
                    "' is missing");
      }
      e.size = a.entry_size(*i, e.name);
      it = storages.emplace(t.storage_key, std::move(e)).first;
    }
    index.records.push_back(make_record(t, it->second, ctx));
  }
  *archive = std::move(zip);
  return index;
}

std::unique_ptr<ByteSource> open_zip_record(std::shared_ptr<ZipArchive> archive, const std::string& entry) {
  return std::make_unique<ZipRecordSource>(std::move(archive), entry);
}

}  // namespace varps::io
