# Which CPU kernels the build compiles (src/cpu/kernel_path.hpp): the
# AVX2+FMA path (intrinsics, glibc's vector math library libmvec) on x86-64,
# plain C++ elsewhere. `portable` builds the plain path on x86-64 too, so
# that it can be tested there.
#
# Sets VARPS_CPU_KERNEL_PATH (avx2 or portable), VARPS_CPU_KERNEL_FLAGS (for
# every target that includes the kernels: the library, the program, tests
# and benchmarks must all compile the same path) and VARPS_CPU_KERNEL_LIBS.
set(VARPS_CPU_KERNELS auto CACHE STRING "CPU kernels: auto (avx2 on x86-64, portable elsewhere), avx2 or portable")
set_property(CACHE VARPS_CPU_KERNELS PROPERTY STRINGS auto avx2 portable)

string(TOLOWER "${CMAKE_SYSTEM_PROCESSOR}" _varps_processor)
if(_varps_processor MATCHES "^(x86_64|amd64)$")
  set(_varps_x86_64 ON)
else()
  set(_varps_x86_64 OFF)
endif()

if(VARPS_CPU_KERNELS STREQUAL "auto")
  if(_varps_x86_64)
    set(VARPS_CPU_KERNEL_PATH avx2)
  else()
    set(VARPS_CPU_KERNEL_PATH portable)
  endif()
elseif(VARPS_CPU_KERNELS STREQUAL "avx2")
  if(NOT _varps_x86_64)
    message(FATAL_ERROR "VARPS_CPU_KERNELS=avx2 needs an x86-64 target, not '${CMAKE_SYSTEM_PROCESSOR}'")
  endif()
  set(VARPS_CPU_KERNEL_PATH avx2)
elseif(VARPS_CPU_KERNELS STREQUAL "portable")
  set(VARPS_CPU_KERNEL_PATH portable)
else()
  message(FATAL_ERROR "VARPS_CPU_KERNELS must be auto, avx2 or portable, not '${VARPS_CPU_KERNELS}'")
endif()

set(VARPS_CPU_KERNEL_FLAGS)
if(VARPS_NATIVE)
  list(APPEND VARPS_CPU_KERNEL_FLAGS -march=native)
elseif(VARPS_CPU_KERNEL_PATH STREQUAL "avx2")
  list(APPEND VARPS_CPU_KERNEL_FLAGS -mavx2 -mfma)
endif()
if(VARPS_CPU_KERNEL_PATH STREQUAL "avx2")
  set(VARPS_CPU_KERNEL_LIBS mvec m)
else()
  # Also where -march=native enables AVX2: the portable path does not call
  # libmvec, which is not linked.
  list(APPEND VARPS_CPU_KERNEL_FLAGS -DVARPS_CPU_PORTABLE)
  set(VARPS_CPU_KERNEL_LIBS m)
endif()
message(STATUS "varps: CPU kernels ${VARPS_CPU_KERNEL_PATH} (VARPS_CPU_KERNELS=${VARPS_CPU_KERNELS}, "
               "processor ${CMAKE_SYSTEM_PROCESSOR})")
