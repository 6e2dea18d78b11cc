#include "varps/error.hpp"

namespace varps {

void fail_invariant(const char* expr, const char* file, int line, const std::string& msg) {
  throw Error("internal error at " + std::string(file) + ":" + std::to_string(line) + ": " + expr + ": " + msg);
}

}  // namespace varps
