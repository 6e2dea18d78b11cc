#include "io/pickle.hpp"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "varps/error.hpp"

namespace varps::io {
namespace {

constexpr uint32_t kNoRef = UINT32_MAX;
// GLOBAL lines name a module and an attribute; a longer "line" is garbage.
constexpr size_t kMaxGlobalLine = 256;
// Each _rebuild_tensor_v2 call copies its size and stride tuples, and a
// memoized tuple can be passed again and again for a few bytes each; a rank
// cap keeps that copying linear in the input.
constexpr size_t kMaxRank = 64;

// Names of every pickle opcode (protocols 0-5), so refusals can say what was
// asked for.
const char* opcode_name(uint8_t op) {
  switch (op) {
    case '(': return "MARK";
    case '.': return "STOP";
    case '0': return "POP";
    case '1': return "POP_MARK";
    case '2': return "DUP";
    case 'F': return "FLOAT";
    case 'I': return "INT";
    case 'J': return "BININT";
    case 'K': return "BININT1";
    case 'L': return "LONG";
    case 'M': return "BININT2";
    case 'N': return "NONE";
    case 'P': return "PERSID";
    case 'Q': return "BINPERSID";
    case 'R': return "REDUCE";
    case 'S': return "STRING";
    case 'T': return "BINSTRING";
    case 'U': return "SHORT_BINSTRING";
    case 'V': return "UNICODE";
    case 'X': return "BINUNICODE";
    case 'a': return "APPEND";
    case 'b': return "BUILD";
    case 'c': return "GLOBAL";
    case 'd': return "DICT";
    case '}': return "EMPTY_DICT";
    case 'e': return "APPENDS";
    case 'g': return "GET";
    case 'h': return "BINGET";
    case 'i': return "INST";
    case 'j': return "LONG_BINGET";
    case 'l': return "LIST";
    case ']': return "EMPTY_LIST";
    case 'o': return "OBJ";
    case 'p': return "PUT";
    case 'q': return "BINPUT";
    case 'r': return "LONG_BINPUT";
    case 's': return "SETITEM";
    case 't': return "TUPLE";
    case ')': return "EMPTY_TUPLE";
    case 'u': return "SETITEMS";
    case 'G': return "BINFLOAT";
    case 'B': return "BINBYTES";
    case 'C': return "SHORT_BINBYTES";
    case 0x80: return "PROTO";
    case 0x81: return "NEWOBJ";
    case 0x82: return "EXT1";
    case 0x83: return "EXT2";
    case 0x84: return "EXT4";
    case 0x85: return "TUPLE1";
    case 0x86: return "TUPLE2";
    case 0x87: return "TUPLE3";
    case 0x88: return "NEWTRUE";
    case 0x89: return "NEWFALSE";
    case 0x8a: return "LONG1";
    case 0x8b: return "LONG4";
    case 0x8c: return "SHORT_BINUNICODE";
    case 0x8d: return "BINUNICODE8";
    case 0x8e: return "BINBYTES8";
    case 0x8f: return "EMPTY_SET";
    case 0x90: return "ADDITEMS";
    case 0x91: return "FROZENSET";
    case 0x92: return "NEWOBJ_EX";
    case 0x93: return "STACK_GLOBAL";
    case 0x94: return "MEMOIZE";
    case 0x95: return "FRAME";
    case 0x96: return "BYTEARRAY8";
    case 0x97: return "NEXT_BUFFER";
    case 0x98: return "READONLY_BUFFER";
    default: return nullptr;
  }
}

// Untrusted bytes in a one-line message: printable ASCII only.
std::string printable(std::string_view s) {
  std::string out;
  for (char c : s) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  return out;
}

enum class Kind : uint8_t { None, Bool, Int, Float, Str, Tuple, List, Dict, OrderedDict, Global, Storage, Tensor };

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::None: return "None";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::Str: return "str";
    case Kind::Tuple: return "tuple";
    case Kind::List: return "list";
    case Kind::Dict: return "dict";
    case Kind::OrderedDict: return "OrderedDict";
    case Kind::Global: return "global";
    case Kind::Storage: return "storage";
    case Kind::Tensor: return "tensor";
  }
  return "?";
}

// "an int", "a tuple", "None": for messages.
std::string a_kind(Kind k) {
  const std::string name = kind_name(k);
  if (k == Kind::None) return name;
  return (name[0] == 'i' || name[0] == 'O' ? "an " : "a ") + name;
}

enum class GlobalId : int64_t { OrderedDict, RebuildTensorV2, RebuildParameter, StorageType };

struct AllowedGlobal {
  const char* module;
  const char* name;
  GlobalId id;
  DType dtype;  // for storage types
};

constexpr AllowedGlobal kAllowedGlobals[] = {
    {"collections", "OrderedDict", GlobalId::OrderedDict, DType::F32},
    {"torch._utils", "_rebuild_tensor_v2", GlobalId::RebuildTensorV2, DType::F32},
    {"torch._utils", "_rebuild_parameter", GlobalId::RebuildParameter, DType::F32},
    {"torch", "FloatStorage", GlobalId::StorageType, DType::F32},
    {"torch", "DoubleStorage", GlobalId::StorageType, DType::F64},
    {"torch", "HalfStorage", GlobalId::StorageType, DType::F16},
    {"torch", "BFloat16Storage", GlobalId::StorageType, DType::BF16},
    {"torch", "LongStorage", GlobalId::StorageType, DType::I64},
    {"torch", "IntStorage", GlobalId::StorageType, DType::I32},
    {"torch", "ShortStorage", GlobalId::StorageType, DType::I16},
    {"torch", "CharStorage", GlobalId::StorageType, DType::I8},
    {"torch", "ByteStorage", GlobalId::StorageType, DType::U8},
    {"torch", "BoolStorage", GlobalId::StorageType, DType::Bool},
};

// Every value lives in one arena and is referred to by index. This keeps the
// machine free of ownership cycles and of recursive destruction, whatever
// nesting the input builds; memory stays linear in the input length because
// each opcode creates at most one object, and PickleLimits bounds it by what
// a state dict needs.
struct Obj {
  Kind kind = Kind::None;
  uint32_t ref = kNoRef;  // Str: strings_; containers: items_ (kNoRef while empty);
                          // Global: kAllowedGlobals; Storage: storages_; Tensor: tensors_
  int64_t value = 0;      // Bool, Int; Float as bits
};

struct StorageObj {
  DType dtype;
  std::string key;
  uint64_t numel;
};

struct TensorObj {
  uint32_t storage;  // index into storages_
  int64_t offset;
  Shape shape;
  std::vector<int64_t> strides;
};

class Machine {
 public:
  Machine(std::span<const uint8_t> in, const std::string& where, const PickleLimits& limits)
      : in_(in), where_(where), limits_(limits) {
    none_ = make(Kind::None);
    false_ = make(Kind::Bool, 0);
    true_ = make(Kind::Bool, 1);
  }

  std::vector<PickledTensor> run() {
    while (pos_ < in_.size()) {
      op_pos_ = pos_;
      const uint8_t op = u8();
      if (step(op)) return state_dict(pop());
    }
    fail("input ended without STOP (truncated?)");
  }

 private:
  // ---- errors ----
  [[noreturn]] void fail(const std::string& msg) const {
    throw Error("pickle: " + msg + " at byte " + std::to_string(op_pos_) + " of " + where_);
  }
  [[noreturn]] void refuse_opcode(uint8_t op) const {
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%02x", op);
    const char* name = opcode_name(op);
    std::string msg = std::string("unsupported opcode ") + hex + (name ? std::string(" '") + name + "'" : "");
    if (op >= 0x8c && name) msg += " (protocol 4+; torch.save writes protocol 2)";
    fail(msg);
  }

  // ---- input ----
  void need(size_t n) const {
    if (in_.size() - pos_ < n) fail("truncated operand (need " + std::to_string(n) + " bytes)");
  }
  uint8_t u8() {
    need(1);
    return in_[pos_++];
  }
  uint64_t uint_le(size_t n) {
    need(n);
    uint64_t v = 0;
    for (size_t i = n; i-- > 0;) v = (v << 8) | in_[pos_ + i];
    pos_ += n;
    return v;
  }
  std::string_view take(size_t n) {
    need(n);
    std::string_view s(reinterpret_cast<const char*>(in_.data() + pos_), n);
    pos_ += n;
    return s;
  }
  std::string_view line() {
    const size_t limit = std::min(in_.size(), pos_ + kMaxGlobalLine);
    for (size_t i = pos_; i < limit; ++i) {
      if (in_[i] == '\n') {
        std::string_view s(reinterpret_cast<const char*>(in_.data() + pos_), i - pos_);
        pos_ = i + 1;
        return s;
      }
    }
    fail("GLOBAL name is unterminated or too long");
  }

  // ---- limits ----
  [[noreturn]] void over_limit(const std::string& what, uint64_t limit) const {
    fail("more " + what + " than a state dict needs (limit " + std::to_string(limit) + " for at most " +
         std::to_string(limits_.max_tensors) + " tensors: " + limits_.basis + ")");
  }

  // ---- objects ----
  uint32_t make(Kind kind, int64_t value = 0, uint32_t ref = kNoRef) {
    if (objs_.size() >= limits_.max_objects) over_limit("objects", limits_.max_objects);
    objs_.push_back(Obj{kind, ref, value});
    return static_cast<uint32_t>(objs_.size() - 1);
  }
  uint32_t make_str(std::string_view s) {
    strings_.emplace_back(s);
    return make(Kind::Str, 0, static_cast<uint32_t>(strings_.size() - 1));
  }
  uint32_t make_tuple(std::vector<uint32_t> items) {
    if (items.empty()) return make(Kind::Tuple);
    items_.push_back(std::move(items));
    return make(Kind::Tuple, 0, static_cast<uint32_t>(items_.size() - 1));
  }
  bool is_container(uint32_t obj) const {
    const Kind k = kind(obj);
    return k == Kind::Tuple || k == Kind::List || k == Kind::Dict || k == Kind::OrderedDict;
  }
  // The elements of a container (dicts: key, value, key, value, ...); empty
  // for anything else.
  const std::vector<uint32_t>& items(uint32_t obj) const {
    static const std::vector<uint32_t> empty;
    return (!is_container(obj) || objs_[obj].ref == kNoRef) ? empty : items_[objs_[obj].ref];
  }
  std::vector<uint32_t>& mutable_items(uint32_t obj) {
    VARPS_CHECK(is_container(obj), "mutable_items on a non-container");
    if (objs_[obj].ref == kNoRef) {
      items_.emplace_back();
      objs_[obj].ref = static_cast<uint32_t>(items_.size() - 1);
    }
    return items_[objs_[obj].ref];
  }
  Kind kind(uint32_t obj) const { return objs_[obj].kind; }
  bool is_dict(uint32_t obj) const { return kind(obj) == Kind::Dict || kind(obj) == Kind::OrderedDict; }

  // ---- stack ----
  // Objects below the innermost MARK are out of reach (as in CPython's
  // unpickler) except to the opcodes that consume the mark.
  size_t fence() const { return marks_.empty() ? 0 : marks_.back(); }
  void push(uint32_t obj) { stack_.push_back(obj); }
  uint32_t pop() {
    if (stack_.size() <= fence()) fail("stack underflow");
    uint32_t v = stack_.back();
    stack_.pop_back();
    return v;
  }
  uint32_t top() const {
    if (stack_.size() <= fence()) fail("stack underflow");
    return stack_.back();
  }
  std::vector<uint32_t> pop_mark() {
    if (marks_.empty()) fail("no MARK to pop to");
    const size_t k = marks_.back();
    marks_.pop_back();
    std::vector<uint32_t> out(stack_.begin() + static_cast<std::ptrdiff_t>(k), stack_.end());
    stack_.resize(k);
    return out;
  }

  // ---- opcodes ----
  // Returns true at STOP.
  bool step(uint8_t op) {
    switch (op) {
      case 0x80: {  // PROTO
        const uint8_t v = u8();
        if (v > 5) fail("unknown pickle protocol " + std::to_string(v));
        return false;
      }
      case '.': return true;  // STOP
      case '(': marks_.push_back(stack_.size()); return false;
      case 'N': push(none_); return false;
      case 0x88: push(true_); return false;
      case 0x89: push(false_); return false;
      case '}': push(make(Kind::Dict)); return false;
      case ']': push(make(Kind::List)); return false;
      case ')': push(make(Kind::Tuple)); return false;
      case 'J': push(make(Kind::Int, static_cast<int32_t>(uint_le(4)))); return false;
      case 'K': push(make(Kind::Int, static_cast<int64_t>(uint_le(1)))); return false;
      case 'M': push(make(Kind::Int, static_cast<int64_t>(uint_le(2)))); return false;
      case 0x8a: push(make(Kind::Int, long1())); return false;
      case 'G': {  // BINFLOAT: big-endian double
        uint64_t bits = 0;
        for (char c : take(8)) bits = (bits << 8) | static_cast<uint8_t>(c);
        push(make(Kind::Float, static_cast<int64_t>(bits)));
        return false;
      }
      case 'X': push(make_str(take(static_cast<size_t>(uint_le(4))))); return false;
      case 0x8c: push(make_str(take(u8()))); return false;
      case 'q': memo_put(static_cast<uint32_t>(uint_le(1))); return false;
      case 'r': memo_put(static_cast<uint32_t>(uint_le(4))); return false;
      case 'h': memo_get(static_cast<uint32_t>(uint_le(1))); return false;
      case 'j': memo_get(static_cast<uint32_t>(uint_le(4))); return false;
      case 'c': global(); return false;
      case 't': push(make_tuple(pop_mark())); return false;
      case 0x85:
      case 0x86:
      case 0x87: {  // TUPLE1..3
        std::vector<uint32_t> v(static_cast<size_t>(op - 0x84));
        for (size_t i = v.size(); i-- > 0;) v[i] = pop();
        push(make_tuple(std::move(v)));
        return false;
      }
      case 'a': {  // APPEND
        const uint32_t value = pop();
        append(top(), {value});
        return false;
      }
      case 'e': {  // APPENDS
        std::vector<uint32_t> values = pop_mark();
        append(top(), values);
        return false;
      }
      case 's': {  // SETITEM
        const uint32_t value = pop();
        const uint32_t key = pop();
        set_items(top(), {key, value});
        return false;
      }
      case 'u': {  // SETITEMS
        std::vector<uint32_t> kv = pop_mark();
        if (kv.size() % 2 != 0) fail("SETITEMS with an odd number of items");
        set_items(top(), kv);
        return false;
      }
      case 'Q': push(persistent_load(pop())); return false;
      case 'R': {  // REDUCE
        const uint32_t args = pop();
        const uint32_t callable = pop();
        push(call(callable, args));
        return false;
      }
      case 'b': build(); return false;
      default: refuse_opcode(op);
    }
  }

  int64_t long1() {
    const uint8_t n = u8();
    if (n > 8) fail("LONG1 integer wider than 64 bits");
    if (n == 0) return 0;
    uint64_t v = uint_le(n);
    if (n < 8 && (v >> (8 * n - 1)) & 1) v |= ~uint64_t{0} << (8 * n);  // sign-extend
    return static_cast<int64_t>(v);
  }

  void memo_put(uint32_t key) { memo_[key] = top(); }
  void memo_get(uint32_t key) {
    auto it = memo_.find(key);
    if (it == memo_.end()) fail("memo key " + std::to_string(key) + " is undefined");
    push(it->second);
  }

  void global() {
    const std::string_view module = line();
    const std::string_view name = line();
    for (size_t i = 0; i < std::size(kAllowedGlobals); ++i) {
      if (module == kAllowedGlobals[i].module && name == kAllowedGlobals[i].name) {
        push(make(Kind::Global, 0, static_cast<uint32_t>(i)));
        return;
      }
    }
    fail("refused global '" + printable(module) + "." + printable(name) + "'");
  }

  void append(uint32_t list, const std::vector<uint32_t>& values) {
    if (kind(list) != Kind::List) fail("APPEND to " + a_kind(kind(list)) + ", not a list");
    auto& dst = mutable_items(list);
    dst.insert(dst.end(), values.begin(), values.end());
  }

  void set_items(uint32_t dict, const std::vector<uint32_t>& kv) {
    if (!is_dict(dict)) fail("SETITEM on " + a_kind(kind(dict)) + ", not a dict");
    auto& dst = mutable_items(dict);
    dst.insert(dst.end(), kv.begin(), kv.end());
  }

  const std::string& str(uint32_t obj) const { return strings_[objs_[obj].ref]; }

  // ('storage', torch.XStorage, key, location, numel)
  uint32_t persistent_load(uint32_t pid) {
    const auto& t = items(pid);
    if (kind(pid) != Kind::Tuple || t.size() != 5 || kind(t[0]) != Kind::Str || str(t[0]) != "storage") {
      fail("persistent id is not a ('storage', type, key, location, numel) tuple");
    }
    if (kind(t[1]) != Kind::Global || kAllowedGlobals[objs_[t[1]].ref].id != GlobalId::StorageType) {
      fail("persistent id does not name a storage type");
    }
    if (kind(t[2]) != Kind::Str || kind(t[3]) != Kind::Str || kind(t[4]) != Kind::Int || objs_[t[4]].value < 0) {
      fail("persistent id has a malformed key, location or size");
    }
    const std::string& key = str(t[2]);
    // The key becomes part of a record name; torch writes decimal numbers.
    bool key_ok = !key.empty() && key.size() <= 64;
    for (char c : key)
      key_ok = key_ok && ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_');
    if (!key_ok) fail("storage key '" + printable(key) + "' is not a plain name");
    if (storages_.size() >= limits_.max_tensors) over_limit("storages", limits_.max_tensors);
    storages_.push_back(
        StorageObj{kAllowedGlobals[objs_[t[1]].ref].dtype, key, static_cast<uint64_t>(objs_[t[4]].value)});
    return make(Kind::Storage, 0, static_cast<uint32_t>(storages_.size() - 1));
  }

  std::vector<int64_t> int_tuple(uint32_t obj, const char* what) {
    if (kind(obj) != Kind::Tuple) fail(std::string("tensor ") + what + " is " + a_kind(kind(obj)) + ", not a tuple");
    if (items(obj).size() > kMaxRank) {
      fail(std::string("tensor ") + what + " has more than " + std::to_string(kMaxRank) + " dimensions");
    }
    std::vector<int64_t> out;
    for (uint32_t v : items(obj)) {
      if (kind(v) != Kind::Int || objs_[v].value < 0)
        fail(std::string("tensor ") + what + " holds a non-integer or negative value");
      out.push_back(objs_[v].value);
    }
    return out;
  }

  uint32_t call(uint32_t callable, uint32_t args) {
    if (kind(callable) != Kind::Global) fail("REDUCE on " + a_kind(kind(callable)) + ", not a global");
    if (kind(args) != Kind::Tuple) fail("REDUCE arguments are not a tuple");
    if (++calls_ > limits_.max_calls) over_limit("REDUCE calls", limits_.max_calls);
    const AllowedGlobal& g = kAllowedGlobals[objs_[callable].ref];
    const auto& a = items(args);
    switch (g.id) {
      case GlobalId::OrderedDict:
        if (!a.empty()) fail("OrderedDict called with arguments");
        return make(Kind::OrderedDict);
      case GlobalId::RebuildTensorV2: {
        // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
        if (a.size() != 6 && a.size() != 7) fail("_rebuild_tensor_v2 expects 6 or 7 arguments");
        if (kind(a[0]) != Kind::Storage) fail("_rebuild_tensor_v2 argument 1 is not a storage");
        if (kind(a[1]) != Kind::Int || objs_[a[1]].value < 0)
          fail("_rebuild_tensor_v2 storage offset is not a non-negative int");
        if (tensors_.size() >= limits_.max_tensors) over_limit("_rebuild_tensor_v2 calls", limits_.max_tensors);
        // Sizes and strides are copied into each tensor; count them first.
        dims_ += items(a[2]).size() + items(a[3]).size();
        if (dims_ > limits_.max_dims) over_limit("tensor dimensions", limits_.max_dims);
        TensorObj t{objs_[a[0]].ref, objs_[a[1]].value, int_tuple(a[2], "size"), int_tuple(a[3], "stride")};
        if (t.shape.size() != t.strides.size()) fail("tensor size and stride have different lengths");
        if (kind(a[4]) != Kind::Bool) fail("_rebuild_tensor_v2 requires_grad is not a bool");
        if (!is_dict(a[5])) fail("_rebuild_tensor_v2 backward_hooks is not a dict");
        tensors_.push_back(std::move(t));
        return make(Kind::Tensor, 0, static_cast<uint32_t>(tensors_.size() - 1));
      }
      case GlobalId::RebuildParameter:
        // (data, requires_grad, backward_hooks): the parameter is its data.
        if (a.size() != 3 || kind(a[0]) != Kind::Tensor)
          fail("_rebuild_parameter expects (tensor, requires_grad, hooks)");
        return a[0];
      case GlobalId::StorageType: break;
    }
    fail(std::string("refused call of '") + g.module + "." + g.name + "'");
  }

  // OrderedDict.__reduce__ hands its instance attributes (torch adds
  // `_metadata`) to BUILD; they are accepted and ignored.
  void build() {
    const uint32_t state = pop();
    const uint32_t inst = top();
    if (kind(inst) != Kind::OrderedDict)
      fail("BUILD on " + a_kind(kind(inst)) + "; only OrderedDict state is accepted");
    if (kind(state) != Kind::None && kind(state) != Kind::Dict) fail("BUILD state is not a dict");
  }

  std::vector<PickledTensor> state_dict(uint32_t root) {
    if (!is_dict(root)) fail("the pickle holds " + a_kind(kind(root)) + ", not a state dict");
    const auto& kv = items(root);
    std::vector<PickledTensor> out;
    out.reserve(kv.size() / 2);
    std::unordered_set<std::string> names;
    for (size_t i = 0; i + 1 < kv.size(); i += 2) {
      if (kind(kv[i]) != Kind::Str) fail("state dict key is " + a_kind(kind(kv[i])) + ", not a str");
      const std::string& name = str(kv[i]);
      if (kind(kv[i + 1]) != Kind::Tensor)
        fail("state dict entry '" + printable(name) + "' is " + a_kind(kind(kv[i + 1])) + ", not a tensor");
      if (!names.insert(name).second) fail("state dict entry '" + printable(name) + "' appears twice");
      const TensorObj& t = tensors_[objs_[kv[i + 1]].ref];
      const StorageObj& s = storages_[t.storage];
      out.push_back(PickledTensor{name, s.dtype, s.key, s.numel, t.offset, t.shape, t.strides});
    }
    return out;
  }

  std::span<const uint8_t> in_;
  const std::string& where_;
  size_t pos_ = 0;
  size_t op_pos_ = 0;
  std::vector<Obj> objs_;
  std::vector<std::string> strings_;
  std::vector<std::vector<uint32_t>> items_;
  std::vector<StorageObj> storages_;
  std::vector<TensorObj> tensors_;
  std::vector<uint32_t> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint32_t, uint32_t> memo_;
  const PickleLimits& limits_;
  uint64_t calls_ = 0, dims_ = 0;
  uint32_t none_ = 0, false_ = 0, true_ = 0;
};

}  // namespace

PickleLimits PickleLimits::for_tensors(uint64_t tensors, std::string basis) {
  PickleLimits l;
  l.max_tensors = tensors;
  // _rebuild_tensor_v2, _rebuild_parameter and an OrderedDict for each one's
  // hooks; the state dict itself and its _metadata.
  l.max_calls = 4 * tensors + 16;
  // About 12 objects per tensor plus two per dimension, its name, and the
  // _metadata entries (one dict per module).
  l.max_objects = 64 * tensors + 4096;
  // Rank 8 on average (the models use at most 4), and a few up to kMaxRank.
  l.max_dims = 16 * tensors + 4 * kMaxRank;
  l.basis = std::move(basis);
  return l;
}

PickleLimits PickleLimits::for_storage_records(uint64_t storage_records) {
  return for_tensors(4 * storage_records + 64,
                     "the archive holds " + std::to_string(storage_records) + " storage records");
}

std::vector<PickledTensor> parse_state_dict_pickle(std::span<const uint8_t> bytes, const std::string& where,
                                                   const PickleLimits& limits) {
  // Object indices are 32-bit; callers cap the pickle far below this.
  if (bytes.size() >= kNoRef) throw Error("pickle: " + where + " is too large");
  return Machine(bytes, where, limits).run();
}

}  // namespace varps::io
