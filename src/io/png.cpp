// PNG files through libpng. libpng reports errors by longjmp; each libpng
// session runs inside one small function that holds the setjmp and creates no
// C++ objects with destructors, so the jump never skips a destructor. The
// error text is copied into a fixed buffer and rethrown as varps::Error
// naming the path. Warnings are silenced.
#include <png.h>

#include <cctype>
#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "io/file.hpp"
#include "varps/error.hpp"
#include "varps/image.hpp"

namespace varps {
namespace {

// Bounds on what a file can make the reader do (docs/fuzzing.md, "Bounds on
// bad input"). No model or command uses images beyond 8192 pixels a side
// (the released models make 256 and 512), so larger ones are refused from
// the header, before anything is allocated.
constexpr png_uint_32 kMaxSide = 8192;
// Ancillary chunks (text, ICC profiles, ...): at most this much memory each,
// decompressed zTXt/iTXt/iCCP included, and at most this many kept.
constexpr png_alloc_size_t kMaxChunkBytes = png_alloc_size_t{1} << 20;
constexpr png_uint_32 kMaxCachedChunks = 64;
// Deflate expands at most ~1032:1, so the image data a file really holds is
// at most this many times its IDAT bytes (plus a little for tiny images).
constexpr uint64_t kMaxInflateRatio = 1032;
constexpr uint64_t kInflateSlack = 4096;

struct PngMessage {
  char text[256] = {};
};

void on_error(png_structp png, png_const_charp msg) {
  auto* m = static_cast<PngMessage*>(png_get_error_ptr(png));
  if (m != nullptr) std::snprintf(m->text, sizeof m->text, "%s", msg ? msg : "libpng error");
  png_longjmp(png, 1);
}

void on_warning(png_structp, png_const_charp) {}

struct FileCloser {
  void operator()(std::FILE* f) const {
    if (f) std::fclose(f);
  }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

// ---------------------------------------------------------------- reading

struct ReadSession {
  png_structp png = nullptr;
  png_infop info = nullptr;
  png_infop end_info = nullptr;
  PngMessage message;
  ReadSession() {
    png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &message, on_error, on_warning);
    if (png) info = png_create_info_struct(png);
    if (png) end_info = png_create_info_struct(png);
  }
  ~ReadSession() { png_destroy_read_struct(&png, &info, &end_info); }
};

// Output storage lives in the caller so that a longjmp skips no destructor.
struct Decoded {
  RgbImage img;
  std::vector<png_bytep> rows;
};

bool decode(ReadSession& s, std::FILE* f, bool want_text, Decoded& out) {
  if (setjmp(png_jmpbuf(s.png))) return false;
  png_init_io(s.png, f);
  png_set_user_limits(s.png, kMaxSide, kMaxSide);
  png_set_chunk_malloc_max(s.png, kMaxChunkBytes);
  png_set_chunk_cache_max(s.png, kMaxCachedChunks);
  if (!want_text) {
    // Pixels only: text chunks are skipped unread.
    static const png_byte kText[] = {'t', 'E', 'X', 't', '\0', 'z', 'T', 'X', 't', '\0', 'i', 'T', 'X', 't', '\0'};
    png_set_keep_unknown_chunks(s.png, PNG_HANDLE_CHUNK_NEVER, kText, 3);
  }
  png_read_info(s.png, s.info);
  png_uint_32 width = 0, height = 0;
  int bit_depth = 0, color_type = 0;
  png_get_IHDR(s.png, s.info, &width, &height, &bit_depth, &color_type, nullptr, nullptr, nullptr);
  // Everything becomes 8-bit RGB: palette expanded, grey replicated,
  // 16-bit reduced, alpha and tRNS transparency dropped.
  if (bit_depth == 16) png_set_strip_16(s.png);
  if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(s.png);
  if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(s.png);
  // Expanding a palette also turns tRNS into an alpha channel, so strip
  // alpha whenever either is present.
  if ((color_type & PNG_COLOR_MASK_ALPHA) || png_get_valid(s.png, s.info, PNG_INFO_tRNS)) png_set_strip_alpha(s.png);
  if (color_type == PNG_COLOR_TYPE_GRAY || color_type == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(s.png);
  png_set_interlace_handling(s.png);
  png_read_update_info(s.png, s.info);
  if (png_get_rowbytes(s.png, s.info) != static_cast<size_t>(width) * 3) {
    std::snprintf(s.message.text, sizeof s.message.text, "unexpected row layout after conversion to RGB");
    return false;
  }
  out.img.width = static_cast<int>(width);
  out.img.height = static_cast<int>(height);
  out.img.pixels.resize(static_cast<size_t>(width) * height * 3);
  out.rows.resize(height);
  for (png_uint_32 y = 0; y < height; ++y) out.rows[y] = out.img.pixels.data() + static_cast<size_t>(y) * width * 3;
  png_read_image(s.png, out.rows.data());
  png_read_end(s.png, s.end_info);
  return true;
}

void collect_text(png_structp png, png_infop info, std::vector<std::pair<std::string, std::string>>& out) {
  png_textp text = nullptr;
  int n = 0;
  png_get_text(png, info, &text, &n);
  for (int i = 0; i < n; ++i) {
    out.emplace_back(text[i].key ? text[i].key : "",
                     text[i].text ? std::string(text[i].text, text[i].text_length) : std::string());
  }
}

uint32_t load_be32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

// A chunk type for messages: its four letters, anything else as '?'.
std::string chunk_type_str(const unsigned char* t) {
  std::string s;
  for (int i = 0; i < 4; ++i) s += std::isalpha(t[i]) ? static_cast<char>(t[i]) : '?';
  return s;
}

// Walks the chunk headers (lengths and types, and the IHDR) of `f`, whose
// signature has been read, before libpng sees the file: libpng allocates what
// a chunk declares before reading it, and an image's rows before the data,
// so every declared length must fit in the file, the image must be within
// kMaxSide, and its IDAT bytes must be able to hold its pixels. Returns the
// reason to refuse the file, or "" (then libpng checks the rest: CRCs,
// chunk order, the data itself). Leaves `f` just after the signature.
std::string check_chunks(std::FILE* f) {
  if (std::fseek(f, 0, SEEK_END) != 0) return std::strerror(errno);
  const long end = std::ftell(f);
  if (end < 0) return std::strerror(errno);
  const uint64_t size = static_cast<uint64_t>(end);
  uint64_t pos = 8, idat = 0;
  bool have_ihdr = false;
  png_uint_32 width = 0, height = 0;
  unsigned bit_depth = 0, color_type = 0;
  char msg[256];
  while (size - pos >= 8) {
    unsigned char head[8];
    if (std::fseek(f, static_cast<long>(pos), SEEK_SET) != 0 || std::fread(head, 1, 8, f) != 8) {
      return "cannot read the chunk header at byte " + std::to_string(pos);
    }
    const uint64_t length = load_be32(head);
    const std::string type = chunk_type_str(head + 4);
    if (length > PNG_UINT_31_MAX) {
      std::snprintf(msg, sizeof msg, "chunk '%s' at byte %llu declares %llu bytes, more than PNG allows", type.c_str(),
                    static_cast<unsigned long long>(pos), static_cast<unsigned long long>(length));
      return msg;
    }
    if (length + 12 > size - pos) {
      std::snprintf(msg, sizeof msg, "chunk '%s' at byte %llu declares %llu bytes but the file has only %llu left "
                    "(truncated?)", type.c_str(), static_cast<unsigned long long>(pos),
                    static_cast<unsigned long long>(length), static_cast<unsigned long long>(size - pos - 8));
      return msg;
    }
    if (pos == 8 && type == "IHDR" && length == 13) {
      unsigned char ihdr[13];
      if (std::fread(ihdr, 1, 13, f) != 13) return "cannot read the IHDR chunk";
      width = load_be32(ihdr);
      height = load_be32(ihdr + 4);
      bit_depth = ihdr[8];
      color_type = ihdr[9];
      have_ihdr = true;
      if (width > kMaxSide || height > kMaxSide) {
        std::snprintf(msg, sizeof msg, "image of %ux%u pixels exceeds the %ux%u limit", width, height, kMaxSide,
                      kMaxSide);
        return msg;
      }
    }
    if (type == "IDAT") idat += length;
    pos += length + 12;
    if (type == "IEND") break;
  }
  if (have_ihdr) {
    // The fewest bytes the image's scanlines take (without filter bytes or
    // interlacing, which only add); libpng refuses invalid depths itself.
    const unsigned channels = color_type == 2 ? 3 : color_type == 4 ? 2 : color_type == 6 ? 4 : 1;
    const uint64_t min_raw = uint64_t{height} * (uint64_t{width} * channels * bit_depth / 8);
    if (min_raw > kMaxInflateRatio * idat + kInflateSlack) {
      std::snprintf(msg, sizeof msg, "%ux%u pixels need at least %llu bytes of pixel data, more than its %llu bytes "
                    "of compressed data can hold (truncated or corrupt file)", width, height,
                    static_cast<unsigned long long>(min_raw), static_cast<unsigned long long>(idat));
      return msg;
    }
  }
  if (std::fseek(f, 8, SEEK_SET) != 0) return std::strerror(errno);
  return "";
}

// Decodes the whole file (text chunks may follow the image data).
RgbImage read_png_impl(const std::filesystem::path& path, std::vector<std::pair<std::string, std::string>>* text) {
  // Refuse directories, FIFOs and devices before fopen (which would block on
  // a FIFO or "succeed" on a directory).
  std::error_code ec;
  const std::filesystem::file_type type = std::filesystem::status(path, ec).type();
  if (type != std::filesystem::file_type::regular && type != std::filesystem::file_type::not_found) {
    throw Error("cannot read PNG " + io::quoted(path) + ": not a regular file");
  }
  FilePtr f(std::fopen(path.c_str(), "rb"));
  if (!f) throw Error("cannot read PNG " + io::quoted(path) + ": " + std::strerror(errno));
  unsigned char sig[8] = {};
  if (std::fread(sig, 1, 8, f.get()) != 8 || png_sig_cmp(sig, 0, 8) != 0) {
    throw Error("cannot read PNG " + io::quoted(path) + ": not a PNG file");
  }
  if (const std::string why = check_chunks(f.get()); !why.empty()) {
    throw Error("cannot read PNG " + io::quoted(path) + ": " + why);
  }
  ReadSession s;
  if (!s.png || !s.info || !s.end_info) throw Error("cannot read PNG " + io::quoted(path) + ": out of memory");
  png_set_sig_bytes(s.png, 8);
  Decoded out;
  if (!decode(s, f.get(), text != nullptr, out)) {
    throw Error("cannot read PNG " + io::quoted(path) + ": " + (s.message.text[0] ? s.message.text : "corrupt file"));
  }
  if (text) {
    collect_text(s.png, s.info, *text);
    collect_text(s.png, s.end_info, *text);
  }
  return std::move(out.img);
}

// ---------------------------------------------------------------- writing

struct WriteSession {
  png_structp png = nullptr;
  png_infop info = nullptr;
  PngMessage message;
  WriteSession() {
    png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &message, on_error, on_warning);
    if (png) info = png_create_info_struct(png);
  }
  ~WriteSession() { png_destroy_write_struct(&png, &info); }
};

bool encode(WriteSession& s, std::FILE* f, const RgbImage& img, std::vector<png_text>& text) {
  if (setjmp(png_jmpbuf(s.png))) return false;
  png_init_io(s.png, f);
  png_set_IHDR(s.png, s.info, static_cast<png_uint_32>(img.width), static_cast<png_uint_32>(img.height), 8,
               PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (!text.empty()) png_set_text(s.png, s.info, text.data(), static_cast<int>(text.size()));
  png_write_info(s.png, s.info);
  for (int y = 0; y < img.height; ++y) {
    png_write_row(s.png, img.pixels.data() + static_cast<size_t>(y) * static_cast<size_t>(img.width) * 3);
  }
  png_write_end(s.png, nullptr);
  return true;
}

}  // namespace

namespace {

// Encodes `img` with its text chunks into `f`; the reason on failure.
std::string write_png_stream(std::FILE* f, const RgbImage& img,
                             const std::vector<std::pair<std::string, std::string>>& text) {
  if (img.width <= 0 || img.height <= 0 ||
      img.pixels.size() != static_cast<size_t>(img.width) * static_cast<size_t>(img.height) * 3) {
    return "invalid " + std::to_string(img.width) + "x" + std::to_string(img.height) + " image with " +
           std::to_string(img.pixels.size()) + " bytes of pixels";
  }
  // png_text wants mutable C strings; these copies outlive the session.
  std::vector<std::string> strings;
  strings.reserve(text.size() * 2);
  std::vector<png_text> chunks(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const auto& [key, value] = text[i];
    // tEXt keywords are 1-79 Latin-1 characters; values may not hold NUL.
    if (key.empty() || key.size() > 79 || key.find('\0') != std::string::npos ||
        value.find('\0') != std::string::npos) {
      return "invalid text chunk key '" + key + "'";
    }
    strings.push_back(key);
    strings.push_back(value);
    chunks[i].compression = PNG_TEXT_COMPRESSION_NONE;
    chunks[i].key = strings[2 * i].data();
    chunks[i].text = strings[2 * i + 1].data();
    chunks[i].text_length = value.size();
  }
  WriteSession s;
  if (!s.png || !s.info) return "out of memory";
  if (!encode(s, f, img, chunks)) return s.message.text[0] ? s.message.text : "libpng error";
  return "";
}

}  // namespace

void write_png(const std::filesystem::path& path, const RgbImage& img,
               const std::vector<std::pair<std::string, std::string>>& text) {
  const std::string ctx = "cannot write PNG " + io::quoted(path) + ": ";
  FilePtr f(std::fopen(path.c_str(), "wb"));
  if (!f) throw Error(ctx + std::strerror(errno));
  std::string why = write_png_stream(f.get(), img, text);
  const bool closed = std::fclose(f.release()) == 0;
  if (why.empty() && !closed) why = std::strerror(errno);
  if (!why.empty()) {
    std::error_code ec;
    std::filesystem::remove(path, ec);  // do not leave a broken file behind
    throw Error(ctx + why);
  }
}

std::string encode_png(const RgbImage& img, const std::vector<std::pair<std::string, std::string>>& text) {
  char* buf = nullptr;
  size_t size = 0;
  std::FILE* f = open_memstream(&buf, &size);
  if (!f) throw Error(std::string("cannot encode PNG: ") + std::strerror(errno));
  const std::string why = write_png_stream(f, img, text);
  std::fclose(f);
  std::string out(buf ? buf : "", buf ? size : 0);
  std::free(buf);
  if (!why.empty()) throw Error("cannot encode PNG: " + why);
  return out;
}

RgbImage read_png(const std::filesystem::path& path) { return read_png_impl(path, nullptr); }

std::vector<std::pair<std::string, std::string>> read_png_text(const std::filesystem::path& path) {
  std::vector<std::pair<std::string, std::string>> text;
  read_png_impl(path, &text);
  return text;
}

}  // namespace varps
