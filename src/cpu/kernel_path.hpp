#pragma once
// Which CPU kernels a translation unit compiles, decided in one place so
// that every file (and every test or benchmark that includes the kernels)
// agrees: the AVX2+FMA path (intrinsics, glibc's libmvec) when the compiler
// targets both, the portable C++ path otherwise. CMake's
// VARPS_CPU_KERNELS=portable defines VARPS_CPU_PORTABLE, which picks the
// portable path even where -march=native would enable AVX2 (and where the
// build then does not link libmvec).
#if defined(__AVX2__) && defined(__FMA__) && !defined(VARPS_CPU_PORTABLE)
#define VARPS_CPU_AVX2 1
#else
#define VARPS_CPU_AVX2 0
#endif
