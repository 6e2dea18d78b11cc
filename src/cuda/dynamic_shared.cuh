#pragma once
// VARPS_DYNAMIC_SHARED(T, name): the block's dynamic shared memory (the
// launch's third argument) as T* name. A host compiler builds the kernels
// only for their CPU emulation in the tests (tests/cuda/kernel_emulator.hpp),
// which defines emulated_dynamic_shared() as the launch's buffer.
#ifdef __CUDACC__
#define VARPS_DYNAMIC_SHARED(T, name) extern __shared__ T name[]
#else
void* emulated_dynamic_shared();
#define VARPS_DYNAMIC_SHARED(T, name) T* name = static_cast<T*>(emulated_dynamic_shared())
#endif
