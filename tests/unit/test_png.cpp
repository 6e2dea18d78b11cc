// PNG writing and reading, pixel conversions, and failure on bad files.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "unit/test_files.hpp"
#include "varps/error.hpp"
#include "varps/image.hpp"

namespace varps {
namespace {

using test::error_of;
using test::TempDir;
namespace fs = std::filesystem;

RgbImage gradient(int w, int h) {
  RgbImage img{w, h, std::vector<uint8_t>(static_cast<size_t>(w * h * 3))};
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<uint8_t>(i * 37 + i / 7);
  return img;
}

// ---- a minimal PNG encoder (stored deflate blocks), to produce the colour
// types write_png never writes.

uint32_t crc32(const std::string& s) {
  uint32_t c = 0xffffffffu;
  for (unsigned char b : s) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
  }
  return ~c;
}

std::string be32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
}

std::string chunk(const std::string& type, const std::string& data) {
  return be32(static_cast<uint32_t>(data.size())) + type + data + be32(crc32(type + data));
}

// Rows are raw scanlines without the filter byte.
std::string make_png(int w, int h, int bit_depth, int color_type, const std::vector<std::string>& rows,
                     const std::string& plte = "", const std::string& trns = "") {
  std::string raw;
  for (const std::string& r : rows) raw += '\0' + r;  // filter type None
  std::string z = "\x78\x01";                         // zlib header, then one stored block
  z += '\x01';
  z += test::le_bytes(raw.size(), 2) + test::le_bytes(~raw.size() & 0xffff, 2) + raw;
  uint32_t a = 1, b = 0;
  for (unsigned char c : raw) {
    a = (a + c) % 65521;
    b = (b + a) % 65521;
  }
  z += be32((b << 16) | a);
  std::string ihdr = be32(static_cast<uint32_t>(w)) + be32(static_cast<uint32_t>(h));
  ihdr += static_cast<char>(bit_depth);
  ihdr += static_cast<char>(color_type);
  ihdr += std::string(3, '\0');
  std::string png = "\x89PNG\r\n\x1a\n" + chunk("IHDR", ihdr);
  if (!plte.empty()) png += chunk("PLTE", plte);
  if (!trns.empty()) png += chunk("tRNS", trns);
  return png + chunk("IDAT", z) + chunk("IEND", "");
}

std::vector<uint8_t> rgb(std::initializer_list<int> v) { return std::vector<uint8_t>(v.begin(), v.end()); }

// ---------------------------------------------------------------- tests

TEST(Png, WriteReadRoundTripWithText) {
  TempDir dir;
  const RgbImage img = gradient(13, 7);
  const fs::path p = dir / "out.png";
  const std::vector<std::pair<std::string, std::string>> text = {
      {"Software", "varps"}, {"varps.seed", "42"}, {"varps.config", R"({"cfg": 4.0, "top_k": 900})"}};
  write_png(p, img, text);
  const RgbImage back = read_png(p);
  EXPECT_EQ(back.width, 13);
  EXPECT_EQ(back.height, 7);
  EXPECT_EQ(back.pixels, img.pixels);
  EXPECT_EQ(read_png_text(p), text);
}

TEST(Png, ReadsGreyPaletteSixteenBitAndAlphaAsRgb) {
  TempDir dir;
  struct Case {
    const char* name;
    std::string bytes;
    std::vector<uint8_t> expected;  // 2x1 RGB
  };
  const std::vector<Case> cases = {
      {"grey8", make_png(2, 1, 8, 0, {"\x10\xf0"}), rgb({0x10, 0x10, 0x10, 0xf0, 0xf0, 0xf0})},
      {"grey1", make_png(2, 1, 1, 0, {"\x40"}), rgb({0, 0, 0, 255, 255, 255})},
      {"grey_alpha", make_png(2, 1, 8, 4, {std::string("\x20\x00\x30\xff", 4)}),
       rgb({0x20, 0x20, 0x20, 0x30, 0x30, 0x30})},
      {"rgb16", make_png(2, 1, 16, 2, {std::string("\x12\x34\x56\x78\x9a\xbc\xff\xff\x00\x00\x80\x00", 12)}),
       rgb({0x12, 0x56, 0x9a, 0xff, 0x00, 0x80})},
      {"rgba", make_png(2, 1, 8, 6, {std::string("\x01\x02\x03\x00\x04\x05\x06\x80", 8)}), rgb({1, 2, 3, 4, 5, 6})},
      {"palette_trns",
       make_png(2, 1, 8, 3, {std::string("\x01\x00", 2)}, std::string("\xff\x00\x00\x00\x00\xff", 6),
                std::string("\x00", 1)),
       rgb({0, 0, 255, 255, 0, 0})},
  };
  for (const Case& c : cases) {
    const fs::path p = dir / (std::string(c.name) + ".png");
    test::write_bytes(p, c.bytes);
    RgbImage img;
    ASSERT_NO_THROW(img = read_png(p)) << c.name;
    EXPECT_EQ(img.width, 2) << c.name;
    EXPECT_EQ(img.height, 1) << c.name;
    EXPECT_EQ(img.pixels, c.expected) << c.name;
  }
}

TEST(Png, TruncatedFileThrowsNamingPath) {
  TempDir dir;
  const fs::path good = dir / "good.png";
  write_png(good, gradient(64, 64), {{"k", "v"}});
  const std::string bytes = test::read_bytes(good);
  for (size_t cut : {size_t{4}, size_t{8}, size_t{20}, size_t{60}, bytes.size() / 2, bytes.size() - 12}) {
    const fs::path p = dir / ("cut_" + std::to_string(cut) + ".png");
    test::write_bytes(p, bytes.substr(0, cut));
    EXPECT_CONTAINS(error_of([&] { read_png(p); }), p.string());
    EXPECT_THROW(read_png_text(p), Error);
  }
}

TEST(Png, CorruptDataThrows) {
  TempDir dir;
  std::string bytes = make_png(2, 1, 8, 0, {"\x10\xf0"});
  bytes[bytes.find("IDAT") + 6] ^= 0x55;  // CRC no longer matches
  test::write_bytes(dir / "crc.png", bytes);
  EXPECT_CONTAINS(error_of([&] { read_png(dir / "crc.png"); }), "crc.png");
  // A header claiming an enormous image must fail before allocating it.
  std::string huge = make_png(2, 1, 8, 0, {"\x10\xf0"});
  const std::string ihdr = be32(0x7fffffffu) + be32(0x7fffffffu) + std::string("\x08\x00\x00\x00\x00", 5);
  huge.replace(8, 25, chunk("IHDR", ihdr));
  test::write_bytes(dir / "huge.png", huge);
  EXPECT_CONTAINS(error_of([&] { read_png(dir / "huge.png"); }), "huge.png");
}

TEST(Png, NonPngAndMissingFilesThrowNamingPath) {
  TempDir dir;
  test::write_bytes(dir / "text.png", "hello, I am not an image at all");
  EXPECT_CONTAINS(error_of([&] { read_png(dir / "text.png"); }), "text.png");
  EXPECT_CONTAINS(error_of([&] { read_png(dir / "text.png"); }), "not a PNG");
  EXPECT_CONTAINS(error_of([&] { read_png(dir / "absent.png"); }), "absent.png");
  EXPECT_CONTAINS(error_of([&] { read_png(dir.path()); }), "not a regular file");
}

TEST(Png, WritingToAnUnwritablePathThrows) {
  TempDir dir;
  const fs::path p = dir / "no_such_dir" / "out.png";
  EXPECT_CONTAINS(error_of([&] { write_png(p, gradient(2, 2)); }), p.string());
  EXPECT_THROW(write_png(dir / "bad.png", RgbImage{2, 2, {}}), Error);
  EXPECT_THROW(write_png(dir / "bad.png", gradient(2, 2), {{"", "empty key"}}), Error);
  EXPECT_THROW(write_png(dir / "bad.png", gradient(2, 2), {{std::string(80, 'k'), "long key"}}), Error);
}

// ---- bounds on bad input: what a few bytes can make the reader allocate

std::string png_header(uint32_t w, uint32_t h, int bit_depth = 8, int color_type = 2) {
  std::string ihdr = be32(w) + be32(h);
  ihdr += static_cast<char>(bit_depth);
  ihdr += static_cast<char>(color_type);
  ihdr += std::string(3, '\0');
  return "\x89PNG\r\n\x1a\n" + chunk("IHDR", ihdr);
}

// A zlib stream holding nothing (one empty stored block).
const std::string kEmptyIdat("\x78\x01\x01\x00\x00\xff\xff\x00\x00\x00\x01", 11);

TEST(PngBounds, TextChunkDeclaringMoreThanTheFileHoldsIsRefusedBeforeAllocating) {
  // 41 bytes: signature, IHDR, and a chunk header declaring ~1.6 GB (libpng
  // would allocate it before finding the file ends).
  TempDir dir;
  for (const char* type : {"iTXt", "zTXt", "tEXt"}) {
    const fs::path p = dir / (std::string(type) + ".png");
    test::write_bytes(p, png_header(2, 1) + be32(1600000000u) + type);
    ASSERT_EQ(fs::file_size(p), 41u);
    for (bool text : {false, true}) {
      const std::string e = error_of([&] { text ? (void)read_png_text(p) : (void)read_png(p); });
      EXPECT_CONTAINS(e, p.string());
      EXPECT_CONTAINS(e, std::string("chunk '") + type + "' at byte 33 declares 1600000000 bytes");
      EXPECT_CONTAINS(e, "truncated");
    }
  }
}

TEST(PngBounds, TextChunksBeyondTheCacheLimitAreDropped) {
  TempDir dir;
  std::string png = make_png(2, 1, 8, 0, {"\x10\xf0"});
  std::string text;
  for (int i = 0; i < 100; ++i) text += chunk("tEXt", "k" + std::to_string(i) + std::string(1, '\0') + "v");
  png.insert(png.size() - 12, text);  // before IEND
  test::write_bytes(dir / "many.png", png);
  const auto got = read_png_text(dir / "many.png");
  EXPECT_GT(got.size(), 10u);
  EXPECT_LT(got.size(), 100u);
  EXPECT_EQ(read_png(dir / "many.png").width, 2);
}

TEST(PngBounds, SidesBeyondTheLimitAreRefusedFromTheHeader) {
  TempDir dir;
  // 68 bytes declaring 18000x18000 (~1 GB of RGB).
  test::write_bytes(dir / "big.png", png_header(18000, 18000) + chunk("IDAT", kEmptyIdat) + chunk("IEND", ""));
  const std::string e = error_of([&] { read_png(dir / "big.png"); });
  EXPECT_CONTAINS(e, "big.png");
  EXPECT_CONTAINS(e, "18000x18000 pixels exceeds the 8192x8192 limit");
  test::write_bytes(dir / "wide.png", png_header(8193, 1) + chunk("IEND", ""));
  EXPECT_CONTAINS(error_of([&] { read_png(dir / "wide.png"); }), "8193x1 pixels exceeds");
}

TEST(PngBounds, DeclaredSizeMustFitWhatTheCompressedDataCanHold) {
  // 8000x8000 RGB is 192 MB of pixels; 11 bytes of IDAT can inflate to at
  // most ~11 KB, so the image cannot be there and nothing is allocated.
  TempDir dir;
  test::write_bytes(dir / "empty.png", png_header(8000, 8000) + chunk("IDAT", kEmptyIdat) + chunk("IEND", ""));
  const std::string e = error_of([&] { read_png(dir / "empty.png"); });
  EXPECT_CONTAINS(e, "empty.png");
  EXPECT_CONTAINS(e, "8000x8000 pixels need at least 192000000 bytes of pixel data");
  EXPECT_CONTAINS(e, "11 bytes of compressed data");
  // The largest allowed image, really stored, still reads.
  const RgbImage wide = gradient(8192, 2);
  write_png(dir / "wide.png", wide);
  EXPECT_EQ(read_png(dir / "wide.png").pixels, wide.pixels);
}

TEST(PngPixels, ToRgb8RoundsLikeSaveImage) {
  // One row of 8 pixels; channel planes R, G, B.
  const std::vector<float> r = {0.0f, 1.0f, 0.5f, -1.0f, 2.0f, NAN, 0.998f, 1.0f / 255.0f};
  std::vector<float> chw = r;
  for (float v : r) chw.push_back(1.0f - v);
  chw.insert(chw.end(), 8, 0.25f);
  const RgbImage img = to_rgb8(chw.data(), 1, 8);
  ASSERT_EQ(img.pixels.size(), 24u);
  const uint8_t expected_r[] = {0, 255, 128, 0, 255, 0, 254, 1};
  for (int x = 0; x < 8; ++x) {
    EXPECT_EQ(img.pixels[x * 3], expected_r[x]) << "x=" << x;
    EXPECT_EQ(img.pixels[x * 3 + 2], 64) << "0.25 * 255 + 0.5 = 64.25";
  }
  EXPECT_EQ(img.pixels[1], 255);  // G = 1 - 0
  EXPECT_EQ(img.pixels[4], 0);    // G = 1 - 1
  EXPECT_THROW(to_rgb8(nullptr, 2, 2), Error);
  EXPECT_THROW(to_rgb8(chw.data(), -1, 2), Error);
}

TEST(PngPixels, SignedChwMapsToMinusOnePlusOne) {
  RgbImage img{2, 1, {0, 255, 51, 255, 0, 102}};
  const Tensor t = rgb8_to_signed_chw(img);
  EXPECT_EQ(t.shape, (Shape{3, 1, 2}));
  // planes: R = {0, 255}, G = {255, 0}, B = {51, 102}
  EXPECT_EQ(t.data[0], -1.0f);
  EXPECT_EQ(t.data[1], 1.0f);
  EXPECT_EQ(t.data[2], 1.0f);
  EXPECT_EQ(t.data[3], -1.0f);
  EXPECT_FLOAT_EQ(t.data[4], -0.6f);
  EXPECT_FLOAT_EQ(t.data[5], -0.2f);
  img.pixels.pop_back();
  EXPECT_THROW(rgb8_to_signed_chw(img), Error);
}

}  // namespace
}  // namespace varps
