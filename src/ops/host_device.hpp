#pragma once
// What lets one formula serve both backends: VARPS_HOST_DEVICE marks a
// function nvcc compiles for the host and the device, and the *_rn
// operations round each float step to nearest on both. On the device they
// are the _rn intrinsics, which nvcc never fuses into multiply-adds; on the
// host plain operators, as the project builds with -ffp-contract=off. A
// formula written with them gives the same bits on the CPU and the GPU.

#ifdef __CUDACC__
#define VARPS_HOST_DEVICE __host__ __device__
#else
#define VARPS_HOST_DEVICE
#endif

namespace varps::ops {

VARPS_HOST_DEVICE inline float add_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

VARPS_HOST_DEVICE inline float sub_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}

VARPS_HOST_DEVICE inline float mul_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

VARPS_HOST_DEVICE inline float div_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}

}  // namespace varps::ops
