#pragma once
// A read-only file opened by descriptor, read with pread so that concurrent
// readers never share a file position. Every failure is a varps::Error that
// names the path.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

namespace varps::io {

class File {
 public:
  // Refuses missing paths, directories and other non-regular files.
  static File open_read(const std::filesystem::path& path);

  File(File&& other) noexcept;
  File& operator=(File&&) = delete;
  File(const File&) = delete;
  ~File();

  const std::filesystem::path& path() const { return path_; }
  uint64_t size() const { return size_; }
  // Reads exactly n bytes at offset; a short read (file shrank, I/O error)
  // throws. `what` says what was being read, for the message.
  void read_exact(uint64_t offset, void* dst, size_t n, const char* what) const;

 private:
  File(std::filesystem::path path, int fd, uint64_t size) : path_(std::move(path)), fd_(fd), size_(size) {}
  std::filesystem::path path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

// 'path' in single quotes, for messages.
std::string quoted(const std::filesystem::path& path);

}  // namespace varps::io
