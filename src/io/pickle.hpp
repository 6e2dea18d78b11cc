#pragma once
// An allow-list pickle reader for PyTorch state dicts (the data.pkl record of
// a torch.save zip). It is a stack machine that understands only the opcodes
// and globals torch.save emits for a dict of tensors; nothing is ever called
// or imported, and anything else is refused by name.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "varps/checkpoint.hpp"

namespace varps::io {

struct PickledTensor {
  std::string name;
  DType dtype = DType::F32;    // from the storage type (torch.FloatStorage, ...)
  std::string storage_key;     // the zip record is <stem>/data/<storage_key>
  uint64_t storage_numel = 0;  // elements the persistent id declares
  int64_t storage_offset = 0;  // elements
  Shape shape;
  std::vector<int64_t> strides;  // elements
};

// `where` names the pickle in messages, e.g. "var/data.pkl in '/m/var.pth'".
// Throws varps::Error ("pickle: ... at byte N of <where>") on anything it does
// not accept. Sizes and strides are only checked to be non-negative here.
std::vector<PickledTensor> parse_state_dict_pickle(std::span<const uint8_t> bytes, const std::string& where);

}  // namespace varps::io
