# Sanitizer and fuzzing builds (docs/fuzzing.md). Included before any target
# is defined, so the flags reach the library, the program, the tests and the
# fuzz targets alike.
#
#   VARPS_SANITIZE  AddressSanitizer + UndefinedBehaviorSanitizer; a report
#                   aborts the process, so it fails the test that caused it.
#   VARPS_FUZZ      the same, plus libFuzzer's coverage instrumentation, and
#                   the fuzz targets of tests/fuzz (clang only).
option(VARPS_SANITIZE "Build with AddressSanitizer and UndefinedBehaviorSanitizer" OFF)
option(VARPS_FUZZ "Build the libFuzzer targets of tests/fuzz, everything instrumented (needs clang)" OFF)

if(VARPS_FUZZ AND NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "VARPS_FUZZ=ON needs clang (libFuzzer), but the C++ compiler is ${CMAKE_CXX_COMPILER_ID} "
                      "(${CMAKE_CXX_COMPILER}); configure with -DCMAKE_CXX_COMPILER=clang++-14 "
                      "-DCMAKE_C_COMPILER=clang-14")
endif()

if(VARPS_SANITIZE OR VARPS_FUZZ)
  # Frame pointers keep the reports' stacks complete in optimised code.
  set(VARPS_SANITIZER_FLAGS -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
  if(VARPS_FUZZ)
    list(APPEND VARPS_SANITIZER_FLAGS -fsanitize=fuzzer-no-link)
  endif()
  # Only host C and C++: nvcc does not take these flags.
  add_compile_options("$<$<COMPILE_LANGUAGE:C,CXX>:${VARPS_SANITIZER_FLAGS}>")
  add_link_options(-fsanitize=address,undefined)
  message(STATUS "varps: sanitizers on (${VARPS_SANITIZER_FLAGS})")
endif()
