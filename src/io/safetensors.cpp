// safetensors: u64 little-endian header length, a JSON header, then raw
// little-endian tensor bytes. The header is untrusted: it is parsed with a
// SAX handler that accepts only the documented shape of the header (so deep
// nesting or odd values are refused early and key order is preserved in
// linear time), then every tensor is checked against the file size.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>

#include "io/dtype.hpp"
#include "io/layout.hpp"
#include "io/readers.hpp"
#include "varps/error.hpp"

namespace varps {
namespace io {
namespace {

// Real headers are a few hundred bytes per tensor; anything near this is
// malformed, and the cap keeps a bogus length from driving a huge allocation.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

struct HeaderTensor {
  std::string name;
  std::optional<DType> dtype;
  bool has_shape = false;
  Shape shape;
  std::vector<uint64_t> offsets;
  bool has_offsets = false;
};

class HeaderSax {
 public:
  using json = nlohmann::json;

  std::vector<HeaderTensor> tensors;
  std::map<std::string, std::string> metadata;
  std::string error;

  bool null() { return unexpected("null"); }
  bool boolean(bool) { return unexpected("boolean"); }
  bool number_integer(json::number_integer_t v) {
    if (v < 0) return fail(where() + " has a negative value " + std::to_string(v));
    return number_unsigned(static_cast<uint64_t>(v));
  }
  bool number_unsigned(json::number_unsigned_t v) {
    if (state_ == State::Shape) {
      if (v > static_cast<uint64_t>(INT64_MAX)) return fail(where() + " has a dimension that is too large");
      cur_.shape.push_back(static_cast<int64_t>(v));
      return true;
    }
    if (state_ == State::Offsets) {
      if (cur_.offsets.size() == 2) return fail(where() + " has more than two data_offsets");
      cur_.offsets.push_back(v);
      return true;
    }
    return unexpected("number");
  }
  bool number_float(json::number_float_t, const std::string& text) { return unexpected("non-integer number " + text); }
  bool string(std::string& s) {
    if (state_ == State::Metadata) {
      metadata[key_] = s;
      return true;
    }
    if (state_ == State::Tensor && field_ == "dtype") {
      cur_.dtype = dtype_from_name(s);
      if (!cur_.dtype) return fail("tensor '" + cur_.name + "' has unsupported dtype '" + s + "'");
      return true;
    }
    return unexpected("string");
  }
  bool binary(json::binary_t&) { return unexpected("binary data"); }

  bool start_object(std::size_t) {
    switch (state_) {
      case State::Start: state_ = State::Top; return true;
      case State::Top:
        if (key_ == "__metadata__") {
          state_ = State::Metadata;
        } else {
          if (!names_.insert(key_).second) return fail("tensor '" + key_ + "' appears twice");
          cur_ = HeaderTensor{};
          cur_.name = key_;
          seen_fields_.clear();
          state_ = State::Tensor;
        }
        return true;
      default: return unexpected("object");
    }
  }
  bool key(std::string& k) {
    if (state_ == State::Tensor) {
      if (k != "dtype" && k != "shape" && k != "data_offsets") {
        return fail("tensor '" + cur_.name + "' has unknown field '" + k + "'");
      }
      if (!seen_fields_.insert(k).second) return fail("tensor '" + cur_.name + "' repeats field '" + k + "'");
      field_ = k;
      return true;
    }
    key_ = k;
    return true;
  }
  bool end_object() {
    switch (state_) {
      case State::Top: state_ = State::Done; return true;
      case State::Metadata: state_ = State::Top; return true;
      case State::Tensor:
        if (!cur_.dtype || !cur_.has_shape || !cur_.has_offsets) {
          return fail("tensor '" + cur_.name + "' lacks dtype, shape or data_offsets");
        }
        tensors.push_back(std::move(cur_));
        state_ = State::Top;
        return true;
      default: return unexpected("end of object");
    }
  }
  bool start_array(std::size_t) {
    if (state_ == State::Tensor && field_ == "shape") {
      state_ = State::Shape;
      cur_.has_shape = true;
      return true;
    }
    if (state_ == State::Tensor && field_ == "data_offsets") {
      state_ = State::Offsets;
      cur_.has_offsets = true;
      return true;
    }
    return unexpected("array");
  }
  bool end_array() {
    if (state_ == State::Shape) {
      state_ = State::Tensor;
      return true;
    }
    if (state_ == State::Offsets) {
      if (cur_.offsets.size() != 2) return fail("tensor '" + cur_.name + "' needs exactly two data_offsets");
      state_ = State::Tensor;
      return true;
    }
    return unexpected("end of array");
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& ex) {
    return fail(std::string("header is not valid JSON: ") + ex.what());
  }

 private:
  enum class State { Start, Top, Metadata, Tensor, Shape, Offsets, Done };

  std::string where() const {
    if (state_ == State::Shape) return "tensor '" + cur_.name + "' shape";
    if (state_ == State::Offsets) return "tensor '" + cur_.name + "' data_offsets";
    return "header";
  }
  bool unexpected(const std::string& what) {
    switch (state_) {
      case State::Start: return fail("header is not a JSON object");
      case State::Top: return fail("entry '" + key_ + "' is not an object (found " + what + ")");
      case State::Metadata: return fail("__metadata__ entry '" + key_ + "' is not a string (found " + what + ")");
      case State::Tensor: return fail("tensor '" + cur_.name + "': unexpected " + what + " in field '" + field_ + "'");
      case State::Shape:
      case State::Offsets: return fail(where() + ": unexpected " + what);
      case State::Done: return fail("unexpected " + what + " after the header object");
    }
    return false;
  }
  bool fail(std::string msg) {
    if (error.empty()) error = std::move(msg);
    return false;
  }

  State state_ = State::Start;
  std::string key_;
  std::string field_;
  std::set<std::string> names_;
  std::set<std::string> seen_fields_;
  HeaderTensor cur_;
};

uint64_t load_u64le(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

CheckpointIndex read_safetensors_index(const File& file) {
  const std::string ctx = "safetensors file " + quoted(file.path()) + ": ";
  if (file.size() < 8) {
    throw Error(ctx + "too short (" + std::to_string(file.size()) + " bytes) to hold a header length");
  }
  unsigned char len_bytes[8];
  file.read_exact(0, len_bytes, 8, "the safetensors header length");
  const uint64_t header_len = load_u64le(len_bytes);
  if (header_len > file.size() - 8) {
    throw Error(ctx + "header length " + std::to_string(header_len) + " exceeds the file size (" +
                std::to_string(file.size()) + " bytes); truncated or not a safetensors file");
  }
  if (header_len > kMaxHeaderBytes) {
    throw Error(ctx + "header length " + std::to_string(header_len) + " exceeds the " +
                std::to_string(kMaxHeaderBytes) + "-byte limit");
  }
  std::string header(header_len, '\0');
  file.read_exact(8, header.data(), header.size(), "the safetensors header");

  HeaderSax sax;
  if (!nlohmann::json::sax_parse(header, &sax) || !sax.error.empty()) {
    throw Error(ctx + (sax.error.empty() ? std::string("header is not valid JSON") : sax.error));
  }

  const uint64_t data_start = 8 + header_len;
  const uint64_t data_bytes = file.size() - data_start;
  CheckpointIndex index;
  index.metadata = std::move(sax.metadata);
  index.records.reserve(sax.tensors.size());
  for (HeaderTensor& t : sax.tensors) {
    const std::string tctx = ctx + "tensor '" + t.name + "': ";
    const uint64_t begin = t.offsets[0], end = t.offsets[1];
    if (begin > end || end > data_bytes) {
      throw Error(tctx + "data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                  "] lie outside the data region (" + std::to_string(data_bytes) + " bytes)");
    }
    TensorRecord rec;
    rec.name = std::move(t.name);
    rec.dtype = *t.dtype;
    rec.strides = contiguous_strides(t.shape);
    rec.shape = std::move(t.shape);
    const std::optional<uint64_t> count = strided_extent(rec.shape, rec.strides);
    uint64_t bytes = 0;
    if (!count || __builtin_mul_overflow(*count, dtype_size(rec.dtype), &bytes)) {
      throw Error(tctx + "shape " + shape_str(rec.shape) + " is too large");
    }
    if (bytes != end - begin) {
      throw Error(tctx + "shape " + shape_str(rec.shape) + " of " + dtype_name(rec.dtype) + " needs " +
                  std::to_string(bytes) + " bytes but data_offsets [" + std::to_string(begin) + ", " +
                  std::to_string(end) + "] span " + std::to_string(end - begin));
    }
    rec.offset = data_start + begin;
    rec.storage_bytes = end - begin;
    index.records.push_back(std::move(rec));
  }
  return index;
}

}  // namespace io

namespace {

// Closes the stream on every path; the error check happens at the explicit close.
struct FileCloser {
  void operator()(std::FILE* f) const {
    if (f) std::fclose(f);
  }
};

}  // namespace

void write_safetensors(const std::filesystem::path& path, const std::vector<NamedTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  const std::string ctx = "cannot write safetensors file " + io::quoted(path) + ": ";
  // The header is assembled by hand (nlohmann only escapes the strings) so
  // that tensors keep the caller's order without ordered_json's quadratic
  // inserts.
  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : metadata) {
      if (!first) header += ",";
      first = false;
      header += nlohmann::json(k).dump() + ":" + nlohmann::json(v).dump();
    }
    header += "}";
  }
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const NamedTensor& t : tensors) {
    if ((t.f32 == nullptr) == (t.i64 == nullptr)) {
      throw Error(ctx + "tensor '" + t.name + "' must have exactly one of f32 / i64 set");
    }
    if (t.name.empty() || t.name == "__metadata__" || !names.insert(t.name).second) {
      throw Error(ctx + "tensor name '" + t.name + "' is empty, reserved or repeated");
    }
    const Shape& shape = t.f32 ? t.f32->shape : t.i64->shape;
    const size_t count = t.f32 ? t.f32->data.size() : t.i64->data.size();
    if (numel(shape) != static_cast<int64_t>(count)) {
      throw Error(ctx + "tensor '" + t.name + "' has shape " + shape_str(shape) + " but " + std::to_string(count) +
                  " elements");
    }
    const uint64_t bytes = count * (t.f32 ? 4 : 8);
    if (header.size() > 1) header += ",";
    header += nlohmann::json(t.name).dump() + ":{\"dtype\":\"" + (t.f32 ? "F32" : "I64") + "\",\"shape\":[";
    for (size_t i = 0; i < shape.size(); ++i) {
      if (i) header += ',';
      header += std::to_string(shape[i]);
    }
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + bytes) + "]}";
    offset += bytes;
  }
  header += "}";
  // Padding to a multiple of 8 keeps the data 8-byte aligned for mmap readers.
  header.append((8 - header.size() % 8) % 8, ' ');

  std::unique_ptr<std::FILE, FileCloser> f(std::fopen(path.c_str(), "wb"));
  if (!f) throw Error(ctx + std::strerror(errno));
  unsigned char len_bytes[8];
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<unsigned char>(uint64_t{header.size()} >> (8 * i));
  bool ok = std::fwrite(len_bytes, 1, 8, f.get()) == 8 &&
            std::fwrite(header.data(), 1, header.size(), f.get()) == header.size();
  for (size_t i = 0; ok && i < tensors.size(); ++i) {
    const NamedTensor& t = tensors[i];
    const void* data = t.f32 ? static_cast<const void*>(t.f32->data.data()) : t.i64->data.data();
    const size_t bytes = t.f32 ? t.f32->data.size() * 4 : t.i64->data.size() * 8;
    if (bytes > 0) ok = std::fwrite(data, 1, bytes, f.get()) == bytes;  // an empty tensor's data may be null
  }
  const int err = errno;
  const bool closed = std::fclose(f.release()) == 0;
  if (!ok || !closed) {
    std::error_code ec;
    std::filesystem::remove(path, ec);  // do not leave a truncated file behind
    throw Error(ctx + std::strerror(ok ? errno : err));
  }
}

}  // namespace varps
