// The allow-list pickle reader and PyTorch zip checkpoints built at test
// time: refused globals and opcodes, missing storages, out-of-range extents,
// strided and non-float32 tensors, and robustness against mangled input.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "io/pickle.hpp"
#include "unit/test_files.hpp"
#include "varps/checkpoint.hpp"
#include "varps/error.hpp"

namespace varps {
namespace {

using test::PickleTensorSpec;
using test::PickleWriter;
using test::error_of;
using test::TempDir;
namespace fs = std::filesystem;
using namespace std::string_literals;  // pickles hold NUL bytes

std::vector<io::PickledTensor> parse(const std::string& bytes) {
  return io::parse_state_dict_pickle(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()),
                                     "test.pkl");
}

const PickleTensorSpec kMatrix{.name = "m", .key = "0", .storage_numel = 6, .sizes = {2, 3}, .strides = {3, 1}};

class TorchZip : public ::testing::Test {
 protected:
  fs::path write(const std::string& pickle, const std::map<std::string, std::string>& storages,
                 std::vector<std::pair<std::string, std::string>> extra = {}) {
    const fs::path p = dir_ / ("ckpt" + std::to_string(n_++) + ".pth");
    test::write_torch_zip(p, pickle, storages, "archive", std::move(extra));
    return p;
  }
  TempDir dir_;
  int n_ = 0;
  const std::string six_floats_ = test::pod_bytes(std::vector<float>{1, 2, 3, 4, 5, 6});
};

// ---------------------------------------------------------------- accepted input

TEST_F(TorchZip, ReadsHandWrittenStateDict) {
  const fs::path p = write(test::state_dict_pickle({kMatrix}), {{"0", six_floats_}},
                           {{"version", "3\n"}, {"byteorder", "little"}, {".data/serialization_id", "1234"}});
  const Checkpoint c = Checkpoint::open(p);
  ASSERT_EQ(c.tensors().size(), 1u);
  EXPECT_EQ(c.tensors()[0].entry, "archive/data/0");
  EXPECT_EQ(c.tensors()[0].storage_bytes, 24u);
  EXPECT_EQ(c.read_f32("m").data, (std::vector<float>{1, 2, 3, 4, 5, 6}));
}

TEST_F(TorchZip, GathersStridedViewsAndOffsets) {
  // m.t() of a 2x3 matrix, and a row view starting at element 3.
  const fs::path p = write(test::state_dict_pickle({
                               {.name = "t", .storage_numel = 6, .sizes = {3, 2}, .strides = {1, 3}},
                               {.name = "row", .storage_numel = 6, .offset = 3, .sizes = {3}, .strides = {1}},
                               {.name = "bcast", .storage_numel = 6, .offset = 1, .sizes = {2, 2}, .strides = {0, 2}},
                               {.name = "scalar", .storage_numel = 6, .offset = 5, .sizes = {}, .strides = {}},
                           }),
                           {{"0", six_floats_}});
  const Checkpoint c = Checkpoint::open(p);
  EXPECT_EQ(c.read_f32("t").data, (std::vector<float>{1, 4, 2, 5, 3, 6}));
  EXPECT_EQ(c.read_f32("row").data, (std::vector<float>{4, 5, 6}));
  EXPECT_EQ(c.read_f32("bcast").data, (std::vector<float>{2, 4, 2, 4}));
  EXPECT_EQ(c.read_f32("scalar").data, (std::vector<float>{6}));
  EXPECT_EQ(c.find("row")->offset, 12u);
}

TEST_F(TorchZip, ConvertsStorageTypes) {
  const std::vector<double> f64 = {0.5, -1e300};
  const std::vector<uint16_t> f16 = {0x3555, 0x8000};  // 0.333251953125, -0
  const std::vector<int32_t> i32 = {-3, 70000};
  const std::vector<uint8_t> flags = {1, 0};
  const fs::path p = write(
      test::state_dict_pickle({
          {.name = "d", .storage_type = "DoubleStorage", .key = "0", .storage_numel = 2, .sizes = {2}, .strides = {1}},
          {.name = "h", .storage_type = "HalfStorage", .key = "1", .storage_numel = 2, .sizes = {2}, .strides = {1}},
          {.name = "i", .storage_type = "IntStorage", .key = "2", .storage_numel = 2, .sizes = {2}, .strides = {1}},
          {.name = "b", .storage_type = "BoolStorage", .key = "3", .storage_numel = 2, .sizes = {2}, .strides = {1}},
      }),
      {{"0", test::pod_bytes(f64)},
       {"1", test::pod_bytes(f16)},
       {"2", test::pod_bytes(i32)},
       {"3", test::pod_bytes(flags)}});
  const Checkpoint c = Checkpoint::open(p);
  EXPECT_EQ(c.find("h")->dtype, DType::F16);
  EXPECT_EQ(c.read_f32("d").data, (std::vector<float>{0.5f, -INFINITY}));
  const Tensor h = c.read_f32("h");
  EXPECT_EQ(h.data[0], 0.333251953125f);
  EXPECT_TRUE(h.data[1] == 0.0f && std::signbit(h.data[1]));
  EXPECT_EQ(c.read_i64("i").data, (std::vector<int64_t>{-3, 70000}));
  EXPECT_EQ(c.read_i64("b").data, (std::vector<int64_t>{1, 0}));
}

TEST_F(TorchZip, AcceptsParametersAndAnyStem) {
  PickleTensorSpec param = kMatrix;
  param.as_parameter = true;
  const fs::path p = dir_ / "stem.pth";
  test::write_torch_zip(p, test::state_dict_pickle({param}, /*with_metadata=*/false), {{"0", six_floats_}}, "my_model");
  const Checkpoint c = Checkpoint::open(p);
  EXPECT_EQ(c.tensors().at(0).entry, "my_model/data/0");
  EXPECT_EQ(c.read_f32("m").data.back(), 6.0f);
}

// ---------------------------------------------------------------- refused input

TEST_F(TorchZip, RefusesOsSystemWithoutRunningIt) {
  const fs::path marker = dir_ / "pwned";
  PickleWriter w;
  w.proto().global("os", "system").str("touch " + marker.string()).op('\x85').reduce().stop();
  const fs::path p = write(w.bytes(), {});
  const std::string msg = error_of([&] { Checkpoint::open(p); });
  EXPECT_CONTAINS(msg, "refused global 'os.system'");
  EXPECT_CONTAINS(msg, "at byte 2 of archive/data.pkl");
  EXPECT_CONTAINS(msg, p.string());
  EXPECT_FALSE(fs::exists(marker));
}

TEST(Pickle, RefusesEveryGlobalOutsideTheAllowList) {
  for (const auto& [module, name] :
       std::vector<std::pair<std::string, std::string>>{{"builtins", "eval"},
                                                        {"__builtin__", "getattr"},
                                                        {"torch", "load"},
                                                        {"collections", "defaultdict"},
                                                        {"torch._utils", "_rebuild_tensor"},
                                                        {"torch\x01", "FloatStorage"}}) {
    PickleWriter w;
    w.proto().global(module, name).stop();
    const std::string msg = error_of([&] { parse(w.bytes()); });
    EXPECT_CONTAINS(msg, "refused global");
    EXPECT_CONTAINS(msg, "." + name + "'");
  }
}

TEST_F(TorchZip, RefusesDisallowedOpcodes) {
  PickleWriter inst;  // INST builds an object by calling a class
  inst.proto().mark().raw("iposix\nsystem\n").stop();
  EXPECT_CONTAINS(error_of([&] { Checkpoint::open(write(inst.bytes(), {})); }), "unsupported opcode 0x69 'INST'");

  PickleWriter frame;  // protocol 4 framing
  frame.raw("\x80\x04\x95").raw(test::le_bytes(2, 8)).raw("}.");
  EXPECT_CONTAINS(error_of([&] { parse(frame.bytes()); }), "unsupported opcode 0x95 'FRAME'");

  PickleWriter stack_global;
  stack_global.proto().str("os").str("system").op('\x93').stop();
  EXPECT_CONTAINS(error_of([&] { parse(stack_global.bytes()); }), "'STACK_GLOBAL'");

  EXPECT_CONTAINS(error_of([&] { parse("\x80\x02\xff."); }), "unsupported opcode 0xff");
}

TEST_F(TorchZip, RefusesCallsOfAllowedNonCallables) {
  PickleWriter w;
  w.proto().global("torch", "FloatStorage").empty_tuple().reduce().stop();
  EXPECT_CONTAINS(error_of([&] { parse(w.bytes()); }), "refused call of 'torch.FloatStorage'");
  PickleWriter args;
  args.proto().global("collections", "OrderedDict").str("x").op('\x85').reduce().stop();
  EXPECT_CONTAINS(error_of([&] { parse(args.bytes()); }), "OrderedDict called with arguments");
}

TEST_F(TorchZip, MissingStorageRecord) {
  PickleTensorSpec t = kMatrix;
  t.key = "7";
  const fs::path p = write(test::state_dict_pickle({t}), {{"0", six_floats_}});
  const std::string msg = error_of([&] { Checkpoint::open(p); });
  EXPECT_CONTAINS(msg, "tensor 'm'");
  EXPECT_CONTAINS(msg, "record 'archive/data/7' is missing");
  EXPECT_CONTAINS(msg, p.string());
}

TEST_F(TorchZip, ExtentBeyondStorage) {
  PickleTensorSpec t = kMatrix;
  t.sizes = {3, 3};  // 9 elements from a 6-element storage
  EXPECT_CONTAINS(error_of([&] {
                    Checkpoint::open(write(test::state_dict_pickle({t}), {{"0", six_floats_}}));
                  }),
                  "tensor 'm': offset 0 + extent 9");
  t = kMatrix;
  t.offset = 1;  // the last element falls off the end
  EXPECT_CONTAINS(error_of([&] {
                    Checkpoint::open(write(test::state_dict_pickle({t}), {{"0", six_floats_}}));
                  }),
                  "exceeds its storage of 6 elements");
  t = kMatrix;
  t.storage_numel = 8;  // the pickle claims more than the record holds
  EXPECT_CONTAINS(error_of([&] {
                    Checkpoint::open(write(test::state_dict_pickle({t}), {{"0", six_floats_}}));
                  }),
                  "holds 24 bytes");
  t = kMatrix;
  t.strides = {int64_t{1} << 62, 1};  // (2-1) * 2^62 elements, then * 4 bytes
  t.storage_numel = int64_t{1} << 62;
  EXPECT_CONTAINS(error_of([&] {
                    Checkpoint::open(write(test::state_dict_pickle({t}), {{"0", six_floats_}}));
                  }),
                  "tensor 'm'");
  t = kMatrix;
  t.strides = {int64_t{1} << 62, int64_t{1} << 62};
  EXPECT_CONTAINS(error_of([&] {
                    Checkpoint::open(write(test::state_dict_pickle({t}), {{"0", six_floats_}}));
                  }),
                  "invalid or overflows");
}

TEST_F(TorchZip, RefusesBigEndianAndMissingPickle) {
  EXPECT_CONTAINS(
      error_of([&] {
        Checkpoint::open(write(test::state_dict_pickle({kMatrix}), {{"0", six_floats_}}, {{"byteorder", "big"}}));
      }),
      "big-endian");
  const fs::path no_pickle = dir_ / "no_pickle.pth";
  io::write_stored_zip(no_pickle, {{"archive/data/0", six_floats_}});
  EXPECT_CONTAINS(error_of([&] { Checkpoint::open(no_pickle); }), "data.pkl");
}

TEST(Pickle, RefusesMalformedStructure) {
  EXPECT_CONTAINS(error_of([&] { parse("\x80\x02"); }), "without STOP");
  EXPECT_CONTAINS(error_of([&] { parse("\x80\x02."); }), "stack underflow");
  EXPECT_CONTAINS(error_of([&] { parse("\x80\x02(."); }), "stack underflow");
  EXPECT_CONTAINS(error_of([&] { parse("\x80\x02h\x05."); }), "memo key 5 is undefined");
  EXPECT_CONTAINS(error_of([&] { parse("\x80\x02}X\x01\x00\x00\x00k."s); }), "not a state dict");
  EXPECT_CONTAINS(error_of([&] { parse("\x80\x02X\xff\xff\xff\xff."); }), "truncated operand");
  EXPECT_CONTAINS(error_of([&] { parse("\x80\x02}X\x01\x00\x00\x00kK\x01s."s); }), "entry 'k' is an int, not a tensor");
  EXPECT_CONTAINS(error_of([&] { parse("\x80\x02}(X\x01\x00\x00\x00ku."s); }), "odd number");
  EXPECT_CONTAINS(error_of([&] { parse("\x80\x02]K\x01K\x02s."); }), "SETITEM on a list");
  EXPECT_CONTAINS(error_of([&] { parse("\x80\x02}NK\x01\x8a\x09"); }), "wider than 64 bits");
  EXPECT_CONTAINS(error_of([&] { parse(std::string("\x80\x02\x63") + std::string(1000, 'a')); }), "GLOBAL name");
  // A state dict holding the same name twice.
  EXPECT_CONTAINS(error_of([&] { parse(test::state_dict_pickle({kMatrix, kMatrix})); }), "'m' appears twice");
}

TEST(Pickle, DeepNestingAndHugeCountsDoNotCrash) {
  // 200k nested tuples: no recursion anywhere, so no stack overflow.
  std::string nested = "\x80\x02N";
  for (int i = 0; i < 200000; ++i) nested += '\x85';
  EXPECT_CONTAINS(error_of([&] { parse(nested + "."); }), "holds a tuple, not a state dict");
  // A memoized 1000-element size tuple passed to many tensors is refused
  // rather than copied each time.
  PickleTensorSpec wide = kMatrix;
  wide.sizes.assign(1000, 1);
  wide.strides.assign(1000, 1);
  EXPECT_CONTAINS(error_of([&] { parse(test::state_dict_pickle({wide})); }), "more than 64 dimensions");
  // Memo keys near 2^32 are just map keys.
  EXPECT_CONTAINS(error_of([&] { parse("\x80\x02Nr\xff\xff\xff\xffj\xff\xff\xff\xff."); }),
                  "holds None, not a state dict");
}

TEST(Pickle, ParsesWhatTorchWrites) {
  const std::vector<io::PickledTensor> t = parse(test::state_dict_pickle({kMatrix}));
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].name, "m");
  EXPECT_EQ(t[0].dtype, DType::F32);
  EXPECT_EQ(t[0].storage_key, "0");
  EXPECT_EQ(t[0].storage_numel, 6u);
  EXPECT_EQ(t[0].shape, (Shape{2, 3}));
  EXPECT_EQ(t[0].strides, (std::vector<int64_t>{3, 1}));
}

TEST(Pickle, EveryTruncationIsAnError) {
  const std::string good = test::state_dict_pickle({kMatrix});
  for (size_t n = 0; n < good.size(); ++n) {
    EXPECT_THROW(parse(good.substr(0, n)), Error) << "prefix of " << n << " bytes";
  }
}

TEST(Pickle, MutatedBytesNeverCrash) {
  // Every byte replaced by a few interesting values: the parser may accept
  // (a harmless change) or throw varps::Error, never anything else.
  const std::string good =
      test::state_dict_pickle({kMatrix, {.name = "v", .key = "1", .storage_numel = 2, .sizes = {2}, .strides = {1}}});
  size_t accepted = 0;
  for (size_t i = 0; i < good.size(); ++i) {
    for (char v : {'\0', '\x01', '\x7f', '\x80', '\xff', '(', 'R', 't', 'h', 'b'}) {
      std::string bad = good;
      bad[i] = v;
      try {
        accepted += parse(bad).size() > 0;
      } catch (const Error&) {
      }
    }
  }
  EXPECT_GT(accepted, 0u);
}

// ---------------------------------------------------------------- bounded work

// A pickle that calls _rebuild_tensor_v2 `calls` times on one memoised
// argument tuple of rank-`rank` size and stride tuples (a few bytes a call),
// and returns an empty state dict.
std::string amplifying_pickle(int calls, int rank) {
  PickleWriter w;
  w.proto().global("torch._utils", "_rebuild_tensor_v2").op('q').raw("\x00"s);
  w.mark().mark().str("storage").global("torch", "FloatStorage").str("0").str("cpu").long1(1).tuple().op('Q');
  w.long1(0).int_tuple(std::vector<int64_t>(rank, 1)).int_tuple(std::vector<int64_t>(rank, 1)).newfalse();
  w.ordered_dict().tuple().op('q').raw("\x01"s).reduce();
  for (int i = 1; i < calls; ++i) w.op('h').raw("\x00"s).op('h').raw("\x01"s).reduce();
  return w.ordered_dict().stop().bytes();
}

TEST_F(TorchZip, RepeatedRebuildCallsAreRefusedByTheirWork) {
  // 5 bytes a call, each copying 128 integers: 20000 calls here; the same
  // in a 32 MiB pickle would be millions. One storage record allows a few
  // dozen tensors.
  const std::string wide = amplifying_pickle(20000, 64);
  ASSERT_LT(wide.size(), 110000u);
  const fs::path p = write(wide, {{"0", six_floats_}});
  std::string e = error_of([&] { Checkpoint::open(p); });
  EXPECT_CONTAINS(e, "than a state dict needs");
  EXPECT_CONTAINS(e, "the archive holds 1 storage records");
  EXPECT_CONTAINS(e, p.string());
  // Rank 1: the count of calls is what is refused.
  e = error_of([&] { Checkpoint::open(write(amplifying_pickle(20000, 1), {{"0", six_floats_}})); });
  EXPECT_CONTAINS(e, "more _rebuild_tensor_v2 calls than a state dict needs (limit 68 for at most 68 tensors");
}

TEST(Pickle, ObjectsAndCopiedDimensionsAreBounded) {
  const io::PickleLimits one = io::PickleLimits::for_storage_records(1);
  const auto parse_with = [](const std::string& bytes, const io::PickleLimits& limits) {
    return io::parse_state_dict_pickle(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()),
                                       "test.pkl", limits);
  };
  // One new tuple per byte: refused once past what 68 tensors need.
  std::string nested = "\x80\x02N";
  for (int i = 0; i < 20000; ++i) nested += '\x85';
  EXPECT_CONTAINS(error_of([&] { parse_with(nested + ".", one); }), "more objects than a state dict needs");
  // Few calls, but each with rank-64 sizes and strides.
  EXPECT_CONTAINS(error_of([&] { parse_with(amplifying_pickle(40, 64), one); }),
                  "more tensor dimensions than a state dict needs");
  // Persistent storages are counted too.
  PickleWriter w;
  w.proto().mark().str("storage").global("torch", "FloatStorage").str("0").str("cpu").long1(1).tuple();
  w.op('q').raw("\x00"s).op('Q');
  for (int i = 0; i < 100; ++i) w.op('h').raw("\x00"s).op('Q');
  EXPECT_CONTAINS(error_of([&] { parse_with(w.stop().bytes(), one); }), "more storages than a state dict needs");
}

TEST_F(TorchZip, LimitsLeaveRoomForRealStateDicts) {
  // 600 rank-4 parameters, one storage each, with torch's _metadata.
  std::vector<PickleTensorSpec> specs;
  std::map<std::string, std::string> storages;
  for (int i = 0; i < 600; ++i) {
    specs.push_back({.name = "blocks." + std::to_string(i) + ".weight", .key = std::to_string(i),
                     .storage_numel = 1, .sizes = {1, 1, 1, 1}, .strides = {1, 1, 1, 1}, .as_parameter = true});
    storages[std::to_string(i)] = test::pod_bytes(std::vector<float>{float(i)});
  }
  const Checkpoint c = Checkpoint::open(write(test::state_dict_pickle(specs), storages));
  EXPECT_EQ(c.tensors().size(), 600u);
  EXPECT_EQ(c.read_f32("blocks.599.weight").data, (std::vector<float>{599.0f}));
}

TEST_F(TorchZip, EmptyStateDictBesideStorageRecordsIsRefused) {
  const std::string e = error_of([&] { Checkpoint::open(write(test::state_dict_pickle({}), {{"0", six_floats_}})); });
  EXPECT_CONTAINS(e, "holds no tensors, yet the archive has 1 storage records under archive/data/");
  // Without storages, an empty state dict is just empty.
  EXPECT_TRUE(Checkpoint::open(write(test::state_dict_pickle({}), {})).tensors().empty());
}

}  // namespace
}  // namespace varps
