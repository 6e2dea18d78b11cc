// PNG files through libpng. libpng reports errors by longjmp; each libpng
// session runs inside one small function that holds the setjmp and creates no
// C++ objects with destructors, so the jump never skips a destructor. The
// error text is copied into a fixed buffer and rethrown as varps::Error
// naming the path. Warnings are silenced.
#include <png.h>

#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <memory>

#include "io/file.hpp"
#include "varps/error.hpp"
#include "varps/image.hpp"

namespace varps {
namespace {

// Bounds what a hostile header can make the reader allocate (1 GiB of RGB).
constexpr png_uint_32 kMaxSide = 1u << 16;
constexpr uint64_t kMaxPixels = (uint64_t{1} << 30) / 3;

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

bool decode(ReadSession& s, std::FILE* f, Decoded& out) {
  if (setjmp(png_jmpbuf(s.png))) return false;
  png_init_io(s.png, f);
  png_set_user_limits(s.png, kMaxSide, kMaxSide);
  png_read_info(s.png, s.info);
  png_uint_32 width = 0, height = 0;
  int bit_depth = 0, color_type = 0;
  png_get_IHDR(s.png, s.info, &width, &height, &bit_depth, &color_type, nullptr, nullptr, nullptr);
  if (static_cast<uint64_t>(width) * height > kMaxPixels) {
    std::snprintf(s.message.text, sizeof s.message.text, "image of %ux%u pixels is too large", width, height);
    return false;
  }
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
  ReadSession s;
  if (!s.png || !s.info || !s.end_info) throw Error("cannot read PNG " + io::quoted(path) + ": out of memory");
  png_set_sig_bytes(s.png, 8);
  Decoded out;
  if (!decode(s, f.get(), out)) {
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

void write_png(const std::filesystem::path& path, const RgbImage& img,
               const std::vector<std::pair<std::string, std::string>>& text) {
  const std::string ctx = "cannot write PNG " + io::quoted(path) + ": ";
  if (img.width <= 0 || img.height <= 0 ||
      img.pixels.size() != static_cast<size_t>(img.width) * static_cast<size_t>(img.height) * 3) {
    throw Error(ctx + "invalid " + std::to_string(img.width) + "x" + std::to_string(img.height) + " image with " +
                std::to_string(img.pixels.size()) + " bytes of pixels");
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
      throw Error(ctx + "invalid text chunk key '" + key + "'");
    }
    strings.push_back(key);
    strings.push_back(value);
    chunks[i].compression = PNG_TEXT_COMPRESSION_NONE;
    chunks[i].key = strings[2 * i].data();
    chunks[i].text = strings[2 * i + 1].data();
    chunks[i].text_length = value.size();
  }

  FilePtr f(std::fopen(path.c_str(), "wb"));
  if (!f) throw Error(ctx + std::strerror(errno));
  bool ok = false;
  std::string why;
  {
    WriteSession s;
    if (!s.png || !s.info) {
      why = "out of memory";
    } else if (!encode(s, f.get(), img, chunks)) {
      why = s.message.text[0] ? s.message.text : "libpng error";
    } else {
      ok = true;
    }
  }
  const bool closed = std::fclose(f.release()) == 0;
  if (!ok || !closed) {
    if (ok) why = std::strerror(errno);
    std::error_code ec;
    std::filesystem::remove(path, ec);  // do not leave a broken file behind
    throw Error(ctx + why);
  }
}

RgbImage read_png(const std::filesystem::path& path) { return read_png_impl(path, nullptr); }

std::vector<std::pair<std::string, std::string>> read_png_text(const std::filesystem::path& path) {
  std::vector<std::pair<std::string, std::string>> text;
  read_png_impl(path, &text);
  return text;
}

}  // namespace varps
