#pragma once
// Tests that need a CUDA device skip (and are reported as skipped) when the
// build has no CUDA backend or the machine has no GPU, saying which.
#include <string>

#include <gtest/gtest.h>

#include "backend.hpp"
#include "varps/error.hpp"

namespace varps::testing {

// Empty when a CUDA backend can be made here; otherwise why not.
inline const std::string& cuda_unavailable_reason() {
  static const std::string reason = [] {
    try {
      make_backend(BackendOptions{"cuda"});
      return std::string();
    } catch (const Error& e) {
      return std::string(e.what());
    }
  }();
  return reason;
}

}  // namespace varps::testing

#define VARPS_SKIP_WITHOUT_CUDA()                                                               \
  do {                                                                                          \
    if (!::varps::testing::cuda_unavailable_reason().empty())                                   \
      GTEST_SKIP() << "no CUDA backend: " << ::varps::testing::cuda_unavailable_reason();       \
  } while (0)
