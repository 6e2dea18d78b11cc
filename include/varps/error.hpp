#pragma once
// Errors: user input and files raise varps::Error with context (file, tensor,
// flag); broken invariants go through VARPS_CHECK, which names file and line.
#include <stdexcept>
#include <string>

namespace varps {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

[[noreturn]] void fail_invariant(const char* expr, const char* file, int line, const std::string& msg);

}  // namespace varps

#define VARPS_CHECK(cond, msg)                                                   \
  do {                                                                           \
    if (!(cond)) ::varps::fail_invariant(#cond, __FILE__, __LINE__, (msg));      \
  } while (0)
