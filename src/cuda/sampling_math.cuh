#pragma once
// Per-element arithmetic of the CUDA sampler, callable from host and device
// so it can be checked against the CPU reference without a GPU: the
// order-preserving float key used to sort logits, and the counter-based
// uniform of model/sampler.cpp (Philox4x32-10, 53-bit double), which must
// agree with it bit for bit.
#include <cstdint>
#include <cstring>

namespace varps::cuda {

__host__ __device__ inline uint32_t float_bits(float f) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(f);
#else
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
#endif
}

__host__ __device__ inline float bits_float(uint32_t b) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(b);
#else
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
#endif
}

// Unsigned comparison of the result orders floats as `<` does, with -0.0
// folded into +0.0 (they compare equal, so the CPU's stable sort keeps them
// in index order; a distinct key would not). NaNs land outside [-inf, +inf].
__host__ __device__ inline uint32_t float_order_key(float f) {
  uint32_t b = float_bits(f);
  if (b == 0x80000000u) b = 0u;
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

__host__ __device__ inline float order_key_float(uint32_t k) {
  return bits_float((k & 0x80000000u) ? (k & 0x7FFFFFFFu) : ~k);
}

struct Philox4x32 {
  uint32_t v[4];
};

// The same rounds as varps::philox4x32_10 (Salmon et al. 2011), with
// 64-bit products for the high and low halves.
__host__ __device__ inline Philox4x32 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                                                    uint32_t k1) {
  constexpr uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(M0) * c0;
    const uint64_t p1 = static_cast<uint64_t>(M1) * c2;
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    const uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += W0;
    k1 += W1;
  }
  return {{c0, c1, c2, c3}};
}

// varps::token_uniform: counter (token, scale, 0, 0), key (seed low, seed
// high), u = top 53 bits of the first two words · 2^-53.
__host__ __device__ inline double token_uniform(uint64_t seed, int scale_index, int64_t token_index) {
  const Philox4x32 r = philox4x32_10(static_cast<uint32_t>(token_index), static_cast<uint32_t>(scale_index), 0u, 0u,
                                     static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  const uint64_t bits = ((static_cast<uint64_t>(r.v[0]) << 32) | r.v[1]) >> 11;
  return static_cast<double>(bits) * 0x1.0p-53;
}

}  // namespace varps::cuda
