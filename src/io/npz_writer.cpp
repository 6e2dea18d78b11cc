// .npz archives with libzip, each array streamed from its parts.
#include "io/npz_writer.hpp"

#include <zip.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <fstream>
#include <memory>

#include "varps/error.hpp"

namespace varps::io {

namespace fs = std::filesystem;

namespace {

// 1980-01-01 00:00 local time is the earliest time a zip entry can hold; any
// fixed time keeps the archive's bytes a function of its arrays alone.
constexpr time_t kEntryTime = 315532800 + 12 * 3600;

int64_t element_bytes(const std::string& descr) {
  if (descr.size() < 3) throw Error("npz: unknown dtype '" + descr + "'");
  return std::stoll(descr.substr(2));
}

// A libzip source that reads the header, then each part in turn.
class ArrayStream {
 public:
  ArrayStream(const NpyArray& a) : array_(a), header_(npy_header(a.descr, a.shape)) {
    uint64_t elements = 1;
    for (int64_t d : a.shape) elements *= static_cast<uint64_t>(d);
    data_bytes_ = elements * static_cast<uint64_t>(element_bytes(a.descr));
    uint64_t parts = 0;
    for (const NpyPart& p : a.parts) {
      std::error_code ec;
      const uint64_t n = p.file.empty() ? p.bytes.size() : fs::file_size(p.file, ec);
      if (ec) throw Error("npz: cannot read '" + p.file.string() + "' for array " + a.name + ": " + ec.message());
      parts += n;
    }
    if (parts != data_bytes_)
      throw Error("npz: array " + a.name + " holds " + std::to_string(parts) + " bytes in its parts, its shape needs " +
                  std::to_string(data_bytes_));
  }

  static zip_int64_t callback(void* state, void* data, zip_uint64_t len, zip_source_cmd_t cmd) {
    return static_cast<ArrayStream*>(state)->on(data, len, cmd);
  }

 private:
  zip_int64_t on(void* data, zip_uint64_t len, zip_source_cmd_t cmd) {
    switch (cmd) {
      case ZIP_SOURCE_OPEN:
        part_ = -1;
        offset_ = 0;
        return 0;
      case ZIP_SOURCE_READ: return read(static_cast<char*>(data), len);
      case ZIP_SOURCE_CLOSE:
        file_.close();
        return 0;
      case ZIP_SOURCE_STAT: {
        auto* st = static_cast<zip_stat_t*>(data);
        zip_stat_init(st);
        st->size = header_.size() + data_bytes_;
        st->mtime = kEntryTime;
        st->valid |= ZIP_STAT_SIZE | ZIP_STAT_MTIME;
        return sizeof(zip_stat_t);
      }
      case ZIP_SOURCE_ERROR: return zip_error_to_data(&error_, data, len);
      case ZIP_SOURCE_FREE: return 0;
      case ZIP_SOURCE_SUPPORTS: return ZIP_SOURCE_SUPPORTS_READABLE;
      default: zip_error_set(&error_, ZIP_ER_OPNOTSUPP, 0); return -1;
    }
  }

  // The bytes of the current piece: the header (part -1), then the parts.
  zip_int64_t read(char* out, zip_uint64_t len) {
    zip_uint64_t done = 0;
    while (done < len && part_ < static_cast<int64_t>(array_.parts.size())) {
      if (part_ < 0) {
        const size_t n = std::min<size_t>(len - done, header_.size() - offset_);
        std::copy_n(header_.data() + offset_, n, out + done);
        done += n;
        offset_ += n;
        if (offset_ == header_.size()) next_part();
        continue;
      }
      const NpyPart& p = array_.parts[static_cast<size_t>(part_)];
      if (p.file.empty()) {
        const size_t n = std::min<size_t>(len - done, p.bytes.size() - offset_);
        std::copy_n(p.bytes.data() + offset_, n, out + done);
        done += n;
        offset_ += n;
        if (offset_ == p.bytes.size()) next_part();
        continue;
      }
      file_.read(out + done, static_cast<std::streamsize>(len - done));
      const std::streamsize n = file_.gcount();
      done += static_cast<zip_uint64_t>(n);
      if (file_.eof()) {
        next_part();
      } else if (!file_) {
        zip_error_set(&error_, ZIP_ER_READ, errno);
        return -1;
      }
    }
    return static_cast<zip_int64_t>(done);
  }

  void next_part() {
    file_.close();
    file_.clear();
    ++part_;
    offset_ = 0;
    if (part_ < static_cast<int64_t>(array_.parts.size()) && !array_.parts[part_].file.empty()) {
      file_.open(array_.parts[part_].file, std::ios::binary);
      if (!file_) file_.setstate(std::ios::failbit);
    }
  }

  const NpyArray& array_;
  std::string header_;
  uint64_t data_bytes_ = 0;
  int64_t part_ = -1;
  size_t offset_ = 0;
  std::ifstream file_;
  zip_error_t error_{};
};

struct ZipCloser {
  void operator()(zip_t* z) const { zip_discard(z); }
};

}  // namespace

std::string npy_header(const std::string& descr, const std::vector<int64_t>& shape) {
  std::string dims;
  for (int64_t d : shape) dims += std::to_string(d) + ", ";
  if (shape.size() > 1) dims.erase(dims.size() - 2);  // (N,) keeps its comma
  if (shape.size() == 1) dims.pop_back();
  std::string dict = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (" + dims + "), }";
  const size_t fixed = 10;  // magic (6), version (2), header length (2)
  dict.append((64 - (fixed + dict.size() + 1) % 64) % 64, ' ');
  dict += '\n';
  std::string h = "\x93NUMPY";
  h += '\x01';
  h += '\x00';
  h += static_cast<char>(dict.size() & 0xff);
  h += static_cast<char>(dict.size() >> 8);
  return h + dict;
}

void write_npz(const fs::path& path, const std::vector<NpyArray>& arrays) {
  const fs::path tmp = path.string() + ".tmp";
  std::error_code ec;
  fs::remove(tmp, ec);
  int err = 0;
  std::unique_ptr<zip_t, ZipCloser> z(zip_open(tmp.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &err));
  if (!z) throw Error("cannot write '" + path.string() + "': cannot create the archive (libzip error " + std::to_string(err) + ")");
  std::vector<std::unique_ptr<ArrayStream>> streams;
  for (const NpyArray& a : arrays) {
    streams.push_back(std::make_unique<ArrayStream>(a));
    zip_source_t* src = zip_source_function(z.get(), &ArrayStream::callback, streams.back().get());
    if (!src) throw Error("cannot write '" + path.string() + "': " + zip_strerror(z.get()));
    const zip_int64_t idx = zip_file_add(z.get(), (a.name + ".npy").c_str(), src, ZIP_FL_ENC_UTF_8);
    if (idx < 0) {
      zip_source_free(src);
      throw Error("cannot write '" + path.string() + "': " + zip_strerror(z.get()));
    }
    zip_set_file_compression(z.get(), static_cast<zip_uint64_t>(idx), ZIP_CM_STORE, 0);
    zip_file_set_mtime(z.get(), static_cast<zip_uint64_t>(idx), kEntryTime, 0);
  }
  if (zip_close(z.get()) != 0) {
    const std::string why = zip_strerror(z.get());
    fs::remove(tmp, ec);
    throw Error("cannot write '" + path.string() + "': " + why);
  }
  z.release();  // zip_close freed it
  fs::rename(tmp, path, ec);
  if (ec) throw Error("cannot write '" + path.string() + "': " + ec.message());
}

}  // namespace varps::io
