#include "io/zip_writer.hpp"

#include <zip.h>

#include "io/file.hpp"
#include "varps/error.hpp"

namespace varps::io {

void write_stored_zip(const std::filesystem::path& path,
                      const std::vector<std::pair<std::string, std::string>>& records) {
  const std::string ctx = "cannot write zip " + quoted(path) + ": ";
  int err = 0;
  zip_t* za = zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &err);
  if (za == nullptr) {
    zip_error_t e;
    zip_error_init_with_code(&e, err);
    std::string msg = ctx + zip_error_strerror(&e);
    zip_error_fini(&e);
    throw Error(msg);
  }
  for (const auto& [name, data] : records) {
    // libzip reads the buffer at zip_close; `records` outlives that call.
    zip_source_t* src = zip_source_buffer(za, data.data(), data.size(), 0);
    zip_int64_t index = src ? zip_file_add(za, name.c_str(), src, ZIP_FL_ENC_UTF_8) : -1;
    if (index < 0) {
      if (src) zip_source_free(src);
      std::string msg = ctx + "record '" + name + "': " + zip_strerror(za);
      zip_discard(za);
      throw Error(msg);
    }
    if (zip_set_file_compression(za, static_cast<zip_uint64_t>(index), ZIP_CM_STORE, 0) != 0) {
      std::string msg = ctx + "record '" + name + "': " + zip_strerror(za);
      zip_discard(za);
      throw Error(msg);
    }
  }
  if (zip_close(za) != 0) {
    std::string msg = ctx + zip_strerror(za);
    zip_discard(za);
    throw Error(msg);
  }
}

}  // namespace varps::io
