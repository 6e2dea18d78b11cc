// Checkpoint readers: the golden checkpoints in both formats, safetensors
// header validation, truncated and foreign files, and write_safetensors.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <zip.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "unit/test_files.hpp"
#include "varps/checkpoint.hpp"
#include "varps/error.hpp"

namespace varps {
namespace {

using test::TempDir;
namespace fs = std::filesystem;

const fs::path kGolden = fs::path(VARPS_TEST_DATA) / "golden";

// Runs f, expecting a varps::Error whose message contains every needle.
template <typename F>
void expect_error(F&& f, const std::vector<std::string>& needles) {
  try {
    f();
    ADD_FAILURE() << "no varps::Error thrown; expected one mentioning '" << needles.front() << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const std::string& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
  }
}

// ---------------------------------------------------------------- golden

class CheckpointGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(CheckpointGolden, PthAndSafetensorsHoldIdenticalTensors) {
  const Checkpoint pth = Checkpoint::open(kGolden / (GetParam() + ".pth"));
  const Checkpoint st = Checkpoint::open(kGolden / (GetParam() + ".safetensors"));
  EXPECT_EQ(pth.format(), CheckpointFormat::TorchZip);
  EXPECT_EQ(st.format(), CheckpointFormat::Safetensors);
  ASSERT_GT(pth.tensors().size(), 3u);
  ASSERT_EQ(pth.tensors().size(), st.tensors().size());
  for (size_t i = 0; i < pth.tensors().size(); ++i) {
    const TensorRecord& a = pth.tensors()[i];
    const TensorRecord& b = st.tensors()[i];
    ASSERT_EQ(a.name, b.name) << "tensor #" << i;
    ASSERT_EQ(a.shape, b.shape) << a.name;
    ASSERT_EQ(a.dtype, b.dtype) << a.name;
    EXPECT_FALSE(a.entry.empty());
    EXPECT_TRUE(b.entry.empty());
    EXPECT_EQ(pth.find(a.name), &a);
    if (a.dtype == DType::I64) {
      EXPECT_EQ(pth.read_i64(a).data, st.read_i64(b).data) << a.name;
    } else {
      const Tensor x = pth.read_f32(a), y = st.read_f32(b);
      ASSERT_EQ(x.shape, a.shape);
      ASSERT_EQ(x.data.size(), static_cast<size_t>(numel(a.shape)));
      // Bitwise: the two files must hold the very same floats (inf included).
      EXPECT_EQ(0, std::memcmp(x.data.data(), y.data.data(), x.data.size() * sizeof(float))) << a.name;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(All, CheckpointGolden,
                         ::testing::Values("tiny/var", "tiny/vae", "small/var", "small/vae", "saln/var", "saln/vae"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& c : s) c = (c == '/') ? '_' : c;
                           return s;
                         });

TEST(CheckpointGoldenValues, LevelIndexIsInt64AndMaskHoldsNegInf) {
  for (const char* file : {"tiny/var.pth", "tiny/var.safetensors"}) {
    const Checkpoint c = Checkpoint::open(kGolden / file);
    const TensorRecord* lvl = c.find("lvl_1L");
    ASSERT_NE(lvl, nullptr) << file;
    EXPECT_EQ(lvl->dtype, DType::I64);
    const TensorI64 l = c.read_i64("lvl_1L");
    EXPECT_EQ(l.shape, (Shape{1, 30}));
    EXPECT_EQ(l.data.front(), 0);  // levels are non-decreasing from 0
    for (size_t i = 1; i < l.data.size(); ++i) EXPECT_GE(l.data[i], l.data[i - 1]);
    EXPECT_GT(l.data.back(), 0);

    const Tensor mask = c.read_f32("attn_bias_for_masking");
    size_t neg_inf = 0, zero = 0;
    for (float v : mask.data) {
      neg_inf += (std::isinf(v) && v < 0);
      zero += (v == 0.0f);
    }
    EXPECT_GT(neg_inf, 0u) << file;
    EXPECT_EQ(neg_inf + zero, mask.data.size()) << file;

    EXPECT_THROW(c.read_f32("lvl_1L"), Error);
    EXPECT_THROW(c.read_i64("attn_bias_for_masking"), Error);
    expect_error([&] { c.read_f32("no_such_tensor"); }, {"no_such_tensor", file});
    EXPECT_FALSE(c.contains("no_such_tensor"));
  }
}

TEST(CheckpointGoldenValues, SafetensorsMetadataIsRead) {
  const Checkpoint c = Checkpoint::open(kGolden / "tiny/var.safetensors");
  EXPECT_EQ(c.metadata().at("format"), "pt");
  EXPECT_TRUE(Checkpoint::open(kGolden / "tiny/var.pth").metadata().empty());
}

TEST(CheckpointGoldenValues, GoldenSafetensorsOpenAndRead) {
  for (const char* which : {"tiny", "small", "saln"}) {
    const Checkpoint c = Checkpoint::open(kGolden / which / "golden.safetensors");
    EXPECT_EQ(c.metadata().at("case"), which);
    ASSERT_FALSE(c.tensors().empty());
    for (const TensorRecord& r : c.tensors()) {
      const int64_t n = r.dtype == DType::I64 ? c.read_i64(r).size() : c.read_f32(r).size();
      EXPECT_EQ(n, numel(r.shape)) << r.name;
    }
  }
}

// ---------------------------------------------------------------- files

TEST(CheckpointErrors, MissingFile) {
  TempDir dir;
  expect_error([&] { Checkpoint::open(dir / "nope.pth"); }, {"nope.pth", "does not exist"});
}

TEST(CheckpointErrors, Directory) {
  TempDir dir;
  expect_error([&] { Checkpoint::open(dir.path()); }, {dir.path().string(), "directory"});
}

TEST(CheckpointErrors, FifoIsRefusedWithoutBlocking) {
  TempDir dir;
  const fs::path fifo = dir / "pipe.pth";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  expect_error([&] { Checkpoint::open(fifo); }, {"pipe.pth", "not a regular file"});
}

TEST(CheckpointErrors, EmptyFile) {
  TempDir dir;
  test::write_bytes(dir / "empty.safetensors", "");
  expect_error([&] { Checkpoint::open(dir / "empty.safetensors"); }, {"empty.safetensors", "empty"});
}

TEST(CheckpointErrors, ForeignFile) {
  TempDir dir;
  test::write_bytes(dir / "notes.txt", "these are not the weights you are looking for\n");
  expect_error([&] { Checkpoint::open(dir / "notes.txt"); }, {"notes.txt", "neither"});
  test::write_bytes(dir / "legacy.pth", std::string("\x80\x02\x8a\x0a", 4) + "lots of legacy bytes");
  expect_error([&] { Checkpoint::open(dir / "legacy.pth"); }, {"legacy.pth", "legacy"});
}

TEST(CheckpointErrors, TruncatedPth) {
  TempDir dir;
  const std::string full = test::read_bytes(kGolden / "tiny/var.pth");
  ASSERT_GT(full.size(), 10000u);
  for (size_t cut :
       {size_t{3}, size_t{40}, size_t{5000}, full.size() / 2, full.size() - 100, full.size() - 23, full.size() - 1}) {
    const fs::path p = dir / ("cut_" + std::to_string(cut) + ".pth");
    test::write_bytes(p, full.substr(0, cut));
    expect_error([&] { Checkpoint::open(p); }, {p.string()});
  }
}

TEST(CheckpointErrors, TruncatedSafetensors) {
  TempDir dir;
  const std::string full = test::read_bytes(kGolden / "tiny/var.safetensors");
  const fs::path header_cut = dir / "header_cut.safetensors";
  test::write_bytes(header_cut, full.substr(0, 200));
  expect_error([&] { Checkpoint::open(header_cut); }, {"header_cut.safetensors", "exceeds the file size"});
  const fs::path data_cut = dir / "data_cut.safetensors";
  test::write_bytes(data_cut, full.substr(0, full.size() - 4));
  // The last tensor in the header no longer fits; it is named.
  expect_error([&] { Checkpoint::open(data_cut); }, {"data_cut.safetensors", "outside the data region", "tensor '"});
  const fs::path tiny = dir / "tiny.safetensors";
  test::write_bytes(tiny, full.substr(0, 5));
  expect_error([&] { Checkpoint::open(tiny); }, {"tiny.safetensors"});
}

TEST(CheckpointErrors, CorruptZipCentralDirectory) {
  TempDir dir;
  const fs::path good = dir / "good.pth";
  test::write_torch_zip(good,
                        test::state_dict_pickle({{.name = "w", .storage_numel = 2, .sizes = {2}, .strides = {1}}}),
                        {{"0", test::pod_bytes(std::vector<float>{1, 2})}});
  ASSERT_NO_THROW(Checkpoint::open(good));
  const std::string bytes = test::read_bytes(good);
  const size_t cd = bytes.find("PK\x01\x02");
  ASSERT_NE(cd, std::string::npos);

  // The first central entry points its local header elsewhere.
  std::string moved = bytes;
  moved[cd + 42] = static_cast<char>(moved[cd + 42] + 7);
  test::write_bytes(dir / "moved.pth", moved);
  expect_error([&] { Checkpoint::open(dir / "moved.pth"); }, {"moved.pth"});

  // The central directory's signatures are smashed.
  std::string smashed = bytes;
  for (size_t i = cd; i < smashed.size(); ++i) {
    if (smashed.compare(i, 4, "PK\x01\x02") == 0) smashed[i + 3] = 'X';
  }
  test::write_bytes(dir / "smashed.pth", smashed);
  expect_error([&] { Checkpoint::open(dir / "smashed.pth"); }, {"smashed.pth", "zip"});

  // A central entry claims a different size than its local header.
  std::string resized = bytes;
  resized[cd + 24] = static_cast<char>(resized[cd + 24] + 1);
  test::write_bytes(dir / "resized.pth", resized);
  expect_error([&] { Checkpoint::open(dir / "resized.pth"); }, {"resized.pth"});
}

// A zip of `records`, each deflated: torch.save stores them, but any zip
// tool may compress them.
void write_deflated_zip(const fs::path& path, const std::vector<std::pair<std::string, std::string>>& records) {
  int err = 0;
  zip_t* za = zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &err);
  ASSERT_NE(za, nullptr) << err;
  for (const auto& [name, data] : records) {
    zip_source_t* src = zip_source_buffer(za, data.data(), data.size(), 0);
    const zip_int64_t i = zip_file_add(za, name.c_str(), src, ZIP_FL_ENC_UTF_8);
    ASSERT_GE(i, 0) << zip_strerror(za);
    ASSERT_EQ(zip_set_file_compression(za, static_cast<zip_uint64_t>(i), ZIP_CM_DEFLATE, 9), 0);
  }
  ASSERT_EQ(zip_close(za), 0);
}

// Makes both headers of record `name` (local and central) declare `size`
// uncompressed bytes.
void declare_size(std::string& zip, const std::string& name, uint32_t size) {
  const auto patch = [&](const char* signature, size_t name_at, size_t size_at) {
    int found = 0;
    for (size_t at = zip.find(signature); at != std::string::npos; at = zip.find(signature, at + 4)) {
      if (zip.compare(at + name_at, name.size(), name) != 0) continue;
      zip.replace(at + size_at, 4, test::le_bytes(size, 4));
      ++found;
    }
    EXPECT_EQ(found, 1) << name;
  };
  patch("PK\x03\x04", 30, 22);
  patch("PK\x01\x02", 46, 24);
}

TEST(CheckpointErrors, DeflatedRecordDeclaringMoreThanItCanHoldIsRefused) {
  // A 500-byte file whose storage record declares 2 GB: the tensor fitted
  // that claim, so reading it allocated 2 GB before the record ran out.
  // Deflate expands at most ~1032:1, so the claim is refused up front.
  TempDir dir;
  const int64_t n = 500000000;
  const std::string pickle =
      test::state_dict_pickle({{.name = "w", .storage_numel = n, .sizes = {n}, .strides = {1}}});
  write_deflated_zip(dir / "honest.pth", {{"archive/data.pkl", pickle}, {"archive/data/0", std::string(64, '\0')}});
  std::string bytes = test::read_bytes(dir / "honest.pth");
  ASSERT_LT(bytes.size(), 1000u);
  declare_size(bytes, "archive/data/0", static_cast<uint32_t>(4 * n));
  test::write_bytes(dir / "forged.pth", bytes);
  expect_error([&] { Checkpoint::open(dir / "forged.pth"); },
               {"forged.pth", "record 'archive/data/0'", "declares 2000000000 bytes", "compressed bytes can hold"});

  // Deflated records that hold what they declare read as stored ones do.
  const std::vector<float> zeros(100000, 0.0f);
  write_deflated_zip(dir / "deflated.pth",
                     {{"archive/data.pkl", test::state_dict_pickle({{.name = "w", .storage_numel = 100000,
                                                                      .sizes = {100000}, .strides = {1}}})},
                      {"archive/data/0", test::pod_bytes(zeros)}});
  EXPECT_EQ(Checkpoint::open(dir / "deflated.pth").read_f32("w").data, zeros);
}

// ---------------------------------------------------------------- safetensors headers

// An 8-byte length, the header text, then `data`.
std::string safetensors_bytes(const std::string& header, const std::string& data, uint64_t declared = UINT64_MAX) {
  return test::le_bytes(declared == UINT64_MAX ? header.size() : declared, 8) + header + data;
}

class SafetensorsHeader : public ::testing::Test {
 protected:
  // Writes the file and expects Checkpoint::open to fail mentioning needles.
  void expect_refused(const std::string& bytes, std::vector<std::string> needles) {
    const fs::path p = dir_ / "bad.safetensors";
    test::write_bytes(p, bytes);
    needles.push_back(p.string());
    expect_error([&] { Checkpoint::open(p); }, needles);
  }
  TempDir dir_;
  const std::string data16_ = std::string(16, '\0');
};

TEST_F(SafetensorsHeader, HeaderLengthExceedsFile) {
  expect_refused(safetensors_bytes("{}", "", 4096), {"header length 4096", "exceeds the file size"});
  expect_refused(safetensors_bytes("{}", "", UINT64_MAX - 1), {"exceeds the file size"});
}

TEST_F(SafetensorsHeader, InvalidJson) {
  expect_refused(safetensors_bytes(R"({"a": {"dtype": "F32",)", data16_), {"not valid JSON"});
  expect_refused(safetensors_bytes(R"({"a": 1})", data16_), {"entry 'a'"});
  expect_refused(safetensors_bytes(R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}} x)", data16_),
                 {"not valid JSON"});
}

TEST_F(SafetensorsHeader, DeepNestingIsRefusedWithoutRecursion) {
  expect_refused(safetensors_bytes("{\"a\":" + std::string(200000, '['), data16_), {"entry 'a'"});
  expect_refused(safetensors_bytes("{\"w\": {\"shape\":" + std::string(200000, '['), data16_),
                 {"tensor 'w' shape: unexpected array"});
  expect_refused(safetensors_bytes("{\"__metadata__\": {\"k\":" + std::string(200000, '{'), data16_),
                 {"__metadata__ entry 'k' is not a string"});
  expect_refused(safetensors_bytes("[]", data16_), {"neither"});  // not even the start of a header
}

TEST_F(SafetensorsHeader, DataOffsetsOutOfRange) {
  expect_refused(safetensors_bytes(R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}})", data16_),
                 {"tensor 'w'", "outside the data region"});
  expect_refused(safetensors_bytes(R"({"w": {"dtype": "F32", "shape": [0], "data_offsets": [16, 8]}})", data16_),
                 {"tensor 'w'", "outside the data region"});
  expect_refused(
      safetensors_bytes(R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 18446744073709551615]}})", data16_),
      {"tensor 'w'", "outside the data region"});
  expect_refused(safetensors_bytes(R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0]}})", data16_),
                 {"tensor 'w'", "two data_offsets"});
  expect_refused(safetensors_bytes(R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, -16]}})", data16_),
                 {"tensor 'w'", "negative"});
}

TEST_F(SafetensorsHeader, ShapeDisagreesWithOffsets) {
  expect_refused(safetensors_bytes(R"({"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 16]}})", data16_),
                 {"tensor 'w'", "needs 24 bytes", "span 16"});
  expect_refused(safetensors_bytes(R"({"w": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}})", data16_),
                 {"tensor 'w'", "negative"});
  // numel * 4 wraps around to 16 in 64 bits: must be caught as overflow.
  expect_refused(
      safetensors_bytes(R"({"w": {"dtype": "F32", "shape": [4611686018427387908], "data_offsets": [0, 16]}})", data16_),
      {"tensor 'w'", "too large"});
  expect_refused(
      safetensors_bytes(R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296, 4], "data_offsets": [0, 16]}})",
                        data16_),
      {"tensor 'w'", "too large"});
  expect_refused(safetensors_bytes(R"({"w": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 16]}})", data16_),
                 {"tensor 'w'"});
}

TEST_F(SafetensorsHeader, UnknownDtype) {
  expect_refused(safetensors_bytes(R"({"w": {"dtype": "F8_E4M3", "shape": [16], "data_offsets": [0, 16]}})", data16_),
                 {"tensor 'w'", "unsupported dtype 'F8_E4M3'"});
}

TEST_F(SafetensorsHeader, MissingAndUnknownFieldsAndDuplicates) {
  expect_refused(safetensors_bytes(R"({"w": {"dtype": "F32", "shape": [4]}})", data16_), {"tensor 'w'", "lacks"});
  expect_refused(
      safetensors_bytes(R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16], "extra": 1}})", data16_),
      {"tensor 'w'", "unknown field 'extra'"});
  expect_refused(safetensors_bytes(R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},)"
                                   R"( "w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})",
                                   data16_),
                 {"tensor 'w'", "twice"});
  expect_refused(safetensors_bytes(R"({"__metadata__": {"k": 3}})", data16_), {"__metadata__", "'k'"});
}

TEST_F(SafetensorsHeader, KeepsHeaderOrderAndReadsOtherDtypes) {
  // Halves and bfloat16 widen exactly; I32/U8/BOOL widen to int64.
  const uint16_t half[4] = {0x3c00, 0xc000, 0x0001, 0x7c00};  // 1, -2, 2^-24, inf
  const uint16_t bf16[2] = {0x3f80, 0xc040};                  // 1, -3
  const int32_t i32[2] = {-7, 1 << 30};
  const uint8_t u8[2] = {0, 255}, flags[2] = {0, 9};
  std::string data(reinterpret_cast<const char*>(half), 8);
  data += std::string(reinterpret_cast<const char*>(bf16), 4);
  data += std::string(reinterpret_cast<const char*>(i32), 8);
  data += std::string(reinterpret_cast<const char*>(u8), 2) + std::string(reinterpret_cast<const char*>(flags), 2);
  const std::string header = R"({"z": {"dtype": "F16", "shape": [2, 2], "data_offsets": [0, 8]},)"
                             R"( "b": {"dtype": "BF16", "shape": [2], "data_offsets": [8, 12]},)"
                             R"( "i": {"dtype": "I32", "shape": [2], "data_offsets": [12, 20]},)"
                             R"( "u": {"dtype": "U8", "shape": [2], "data_offsets": [20, 22]},)"
                             R"( "f": {"dtype": "BOOL", "shape": [2], "data_offsets": [22, 24]},)"
                             R"( "e": {"dtype": "F64", "shape": [0, 3], "data_offsets": [24, 24]}})";
  const fs::path p = dir_ / "mixed.safetensors";
  test::write_bytes(p, safetensors_bytes(header, data));
  const Checkpoint c = Checkpoint::open(p);
  std::vector<std::string> names;
  for (const TensorRecord& r : c.tensors()) names.push_back(r.name);
  EXPECT_EQ(names, (std::vector<std::string>{"z", "b", "i", "u", "f", "e"}));
  EXPECT_EQ(c.read_f32("z").data, (std::vector<float>{1.0f, -2.0f, std::ldexp(1.0f, -24), INFINITY}));
  EXPECT_EQ(c.read_f32("b").data, (std::vector<float>{1.0f, -3.0f}));
  EXPECT_EQ(c.read_i64("i").data, (std::vector<int64_t>{-7, 1 << 30}));
  EXPECT_EQ(c.read_i64("u").data, (std::vector<int64_t>{0, 255}));
  EXPECT_EQ(c.read_i64("f").data, (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(c.read_f32("e").shape, (Shape{0, 3}));
  EXPECT_TRUE(c.read_f32("e").data.empty());
}

TEST(CheckpointRecords, RecordsFromCallersAreValidatedBeforeReading) {
  const Checkpoint c = Checkpoint::open(kGolden / "tiny/var.safetensors");
  TensorRecord bogus = c.tensors().front();
  bogus.shape = {1 << 20, 1 << 20};
  bogus.strides = {1 << 20, 1};
  expect_error([&] { c.read_f32(bogus); }, {"do not fit"});
  bogus.shape = {-1};
  bogus.strides = {1};
  expect_error([&] { c.read_f32(bogus); }, {"do not fit"});
}

// ---------------------------------------------------------------- writing

TEST(SafetensorsWrite, RoundTripF32AndI64WithMetadata) {
  TempDir dir;
  const Tensor a(Shape{2, 3}, {0.5f, -1.25f, 3e-8f, -INFINITY, 7.0f, 1e30f});
  const TensorI64 b(Shape{4}, {0, -1, int64_t{1} << 40, std::numeric_limits<int64_t>::min()});
  const Tensor scalar(Shape{}, {42.0f});
  const fs::path p = dir / "out.safetensors";
  write_safetensors(p, {{"a", &a, nullptr}, {"b \"quoted\"", nullptr, &b}, {"s", &scalar, nullptr}},
                    {{"source", "unit test"}, {"n", "3"}});

  const std::string bytes = test::read_bytes(p);
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  EXPECT_EQ((8 + header_len) % 8, 0u) << "tensor data must start 8-byte aligned";
  EXPECT_EQ(bytes.size(), 8 + header_len + 6 * 4 + 4 * 8 + 4);

  const Checkpoint c = Checkpoint::open(p);
  ASSERT_EQ(c.tensors().size(), 3u);
  EXPECT_EQ(c.tensors()[0].name, "a");
  EXPECT_EQ(c.tensors()[1].name, "b \"quoted\"");
  EXPECT_EQ(c.tensors()[1].dtype, DType::I64);
  EXPECT_EQ(c.read_f32("a").data, a.data);
  EXPECT_EQ(c.read_f32("a").shape, a.shape);
  EXPECT_EQ(c.read_i64("b \"quoted\"").data, b.data);
  EXPECT_EQ(c.read_f32("s").shape, Shape{});
  EXPECT_EQ(c.read_f32("s").data, std::vector<float>{42.0f});
  EXPECT_EQ(c.metadata(), (std::map<std::string, std::string>{{"source", "unit test"}, {"n", "3"}}));
}

TEST(SafetensorsWrite, RefusesInconsistentInput) {
  TempDir dir;
  Tensor bad(Shape{2, 2});
  bad.data.resize(3);
  expect_error([&] { write_safetensors(dir / "x.safetensors", {{"bad", &bad, nullptr}}); }, {"bad", "3 elements"});
  const Tensor ok(Shape{1});
  expect_error([&] { write_safetensors(dir / "x.safetensors", {{"t", &ok, nullptr}, {"t", &ok, nullptr}}); }, {"'t'"});
  expect_error([&] { write_safetensors(dir / "x.safetensors", {{"t", nullptr, nullptr}}); }, {"'t'"});
  expect_error(
      [&] {
        write_safetensors(dir / "missing_dir" / "x.safetensors", {{"t", &ok, nullptr}});
      },
      {"missing_dir"});
}

TEST(DTypeNames, SafetensorsSpelling) {
  EXPECT_STREQ(dtype_name(DType::BF16), "BF16");
  EXPECT_STREQ(dtype_name(DType::Bool), "BOOL");
  EXPECT_EQ(dtype_size(DType::F64), 8u);
  EXPECT_EQ(dtype_size(DType::F16), 2u);
  EXPECT_EQ(dtype_size(DType::U8), 1u);
  EXPECT_STREQ(format_name(CheckpointFormat::TorchZip), "pytorch-zip");
  EXPECT_STREQ(format_name(CheckpointFormat::Safetensors), "safetensors");
  EXPECT_EQ(numel({}), 1);
  EXPECT_EQ(numel({2, 0, 3}), 0);
  EXPECT_EQ(shape_str({2, 30, 64}), "[2, 30, 64]");
  EXPECT_EQ(shape_str({}), "[]");
  EXPECT_THROW(numel({-1}), Error);
  EXPECT_THROW(numel({int64_t{1} << 40, int64_t{1} << 40}), Error);
}

TEST(ErrorInvariant, NamesFileLineAndExpression) {
  try {
    VARPS_CHECK(1 + 1 == 3, "arithmetic");
    FAIL();
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("internal error at "), std::string::npos) << msg;
    EXPECT_NE(msg.find("test_checkpoint.cpp:"), std::string::npos) << msg;
    EXPECT_NE(msg.find("1 + 1 == 3: arithmetic"), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace varps
