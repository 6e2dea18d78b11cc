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

// Bounds on the work and memory one pickle may cost, relative to the state
// dict it can describe: a few bytes of pickle can otherwise call
// _rebuild_tensor_v2 on a memoised argument tuple again and again, or wrap
// one object in a new tuple per byte. A state dict of T tensors needs about
// T rebuild calls, 4 REDUCE calls and a few dozen objects per tensor; the
// limits allow that with room to spare and refuse the rest by name.
struct PickleLimits {
  uint64_t max_tensors = 0;  // _rebuild_tensor_v2 calls (and persistent storages)
  uint64_t max_calls = 0;    // REDUCE calls of any allowed global
  uint64_t max_objects = 0;  // objects the machine creates
  uint64_t max_dims = 0;     // size and stride elements copied into tensors
  std::string basis;         // what max_tensors follows from, for messages

  // Room for a state dict of at most `tensors` tensors.
  static PickleLimits for_tensors(uint64_t tensors, std::string basis);
  // For the data.pkl of a zip with `storage_records` records under
  // <stem>/data/: up to 4 tensors per storage record (views of one storage
  // are written once) plus 64.
  static PickleLimits for_storage_records(uint64_t storage_records);
};

// `where` names the pickle in messages, e.g. "var/data.pkl in '/m/var.pth'".
// Throws varps::Error ("pickle: ... at byte N of <where>") on anything it does
// not accept, including input that exceeds `limits` (by default those of a
// state dict of up to 65536 tensors). Sizes and strides are only checked to
// be non-negative here.
std::vector<PickledTensor> parse_state_dict_pickle(std::span<const uint8_t> bytes, const std::string& where,
                                                   const PickleLimits& limits = PickleLimits::for_tensors(
                                                       uint64_t{1} << 16, "the default limit"));

}  // namespace varps::io
