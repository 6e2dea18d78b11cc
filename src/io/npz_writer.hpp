#pragma once
// NumPy .npz archives (a zip of .npy arrays, as numpy.savez writes them),
// written with libzip: entries stored uncompressed, with a fixed timestamp,
// so that the same arrays always give the same bytes. An array's data is
// streamed from its parts (files, or bytes in memory) in order, so arrays
// larger than memory (a 50,000-image sample set) never sit in memory whole.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace varps::io {

struct NpyPart {
  std::filesystem::path file;  // read whole, when not empty
  std::string bytes;           // otherwise
};

struct NpyArray {
  std::string name;   // entry "name.npy"
  std::string descr;  // NumPy dtype: "|u1", "<i8", "<f4"
  std::vector<int64_t> shape;
  std::vector<NpyPart> parts;  // the C-order data, concatenated
};

// The .npy header (format 1.0) of an array: magic, version, the dict
// {'descr', 'fortran_order', 'shape'} padded so the data starts at a
// multiple of 64 bytes, as NumPy pads it.
std::string npy_header(const std::string& descr, const std::vector<int64_t>& shape);

// Writes `path` through a temporary file in the same directory renamed over
// it, so a reader never sees half an archive. Throws varps::Error naming the
// file and the part when a part is missing or its size does not match the
// shape.
void write_npz(const std::filesystem::path& path, const std::vector<NpyArray>& arrays);

}  // namespace varps::io
