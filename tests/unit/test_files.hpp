#pragma once
// Helpers for tests that build (often deliberately broken) files at test
// time: a private temporary directory, raw file I/O, a hand-rolled pickle
// writer that emits exactly what torch.save emits for a state dict, and a
// PyTorch-style zip writer.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "io/zip_writer.hpp"
#include "varps/error.hpp"

namespace varps::test {

namespace fs = std::filesystem;

// The message of the varps::Error that f throws (a test failure if none).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no varps::Error thrown";
  return "";
}

#define EXPECT_CONTAINS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << "'" << (needle) << "' not in: " << (haystack)

// A fresh directory under the system temp dir, removed with its contents.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    path_ = fs::temp_directory_path() /
            ("varps_test_" + std::to_string(::getpid()) + "_" + std::to_string(now) + "_" + std::to_string(counter++));
    fs::create_directories(path_);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  fs::path operator/(const std::string& name) const { return path_ / name; }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

inline std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline std::string le_bytes(uint64_t v, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

// Pickle protocol 2 opcodes, written by hand.
class PickleWriter {
 public:
  PickleWriter& proto() { return raw("\x80\x02"); }
  PickleWriter& op(char c) {
    bytes_ += c;
    return *this;
  }
  PickleWriter& raw(const std::string& s) {
    bytes_ += s;
    return *this;
  }
  PickleWriter& mark() { return op('('); }
  PickleWriter& global(const std::string& module, const std::string& name) {
    return op('c').raw(module + "\n" + name + "\n");
  }
  PickleWriter& str(const std::string& s) { return op('X').raw(le_bytes(s.size(), 4)).raw(s); }
  PickleWriter& integer(int64_t v) { return op('J').raw(le_bytes(static_cast<uint64_t>(v), 4)); }
  PickleWriter& long1(int64_t v) { return op('\x8a').raw("\x08").raw(le_bytes(static_cast<uint64_t>(v), 8)); }
  PickleWriter& tuple() { return op('t'); }
  PickleWriter& empty_tuple() { return op(')'); }
  PickleWriter& empty_dict() { return op('}'); }
  PickleWriter& reduce() { return op('R'); }
  PickleWriter& setitem() { return op('s'); }
  PickleWriter& setitems() { return op('u'); }
  PickleWriter& build() { return op('b'); }
  PickleWriter& newfalse() { return op('\x89'); }
  PickleWriter& stop() { return op('.'); }
  PickleWriter& ordered_dict() { return global("collections", "OrderedDict").empty_tuple().reduce(); }
  PickleWriter& int_tuple(const std::vector<int64_t>& v) {
    mark();
    for (int64_t x : v) long1(x);
    return tuple();
  }
  const std::string& bytes() const { return bytes_; }

 private:
  std::string bytes_;
};

struct PickleTensorSpec {
  std::string name;
  std::string storage_type = "FloatStorage";
  std::string key = "0";
  int64_t storage_numel = 0;
  int64_t offset = 0;
  std::vector<int64_t> sizes;
  std::vector<int64_t> strides;
  bool as_parameter = false;  // wrap in torch._utils._rebuild_parameter
};

// Emits one tensor value the way torch.save does.
inline void write_tensor(PickleWriter& w, const PickleTensorSpec& t) {
  if (t.as_parameter) w.global("torch._utils", "_rebuild_parameter").mark();
  w.global("torch._utils", "_rebuild_tensor_v2").mark();
  w.mark().str("storage").global("torch", t.storage_type).str(t.key).str("cpu").long1(t.storage_numel).tuple();
  w.op('Q');  // BINPERSID
  w.long1(t.offset).int_tuple(t.sizes).int_tuple(t.strides).newfalse().ordered_dict();
  w.tuple().reduce();
  if (t.as_parameter) w.newfalse().ordered_dict().tuple().reduce();
}

// An OrderedDict state dict; with_metadata adds torch's `_metadata`
// attribute through BUILD, as torch.save(module.state_dict()) does.
inline std::string state_dict_pickle(const std::vector<PickleTensorSpec>& tensors, bool with_metadata = true) {
  PickleWriter w;
  w.proto().ordered_dict().mark();
  for (const PickleTensorSpec& t : tensors) {
    w.str(t.name);
    write_tensor(w, t);
  }
  w.setitems();
  if (with_metadata) {
    w.empty_dict().str("_metadata").ordered_dict().mark().str("").empty_dict().str("version").long1(1).setitem();
    w.setitems().setitem().build();
  }
  return w.stop().bytes();
}

// A PyTorch-style archive: <stem>/data.pkl, <stem>/data/<key>, extras.
inline void write_torch_zip(const fs::path& path, const std::string& pickle,
                            const std::map<std::string, std::string>& storages, const std::string& stem = "archive",
                            std::vector<std::pair<std::string, std::string>> extra = {}) {
  std::vector<std::pair<std::string, std::string>> records = {{stem + "/data.pkl", pickle}};
  for (const auto& [key, bytes] : storages) records.emplace_back(stem + "/data/" + key, bytes);
  for (auto& e : extra) records.emplace_back(stem + "/" + e.first, e.second);
  io::write_stored_zip(path, records);
}

template <typename T>
std::string pod_bytes(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

}  // namespace varps::test
