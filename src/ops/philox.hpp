#pragma once
// The counter-based generator of token sampling (see sampler.hpp): one
// implementation for the CPU sampler and the CUDA sampling kernel, so both
// backends draw the same uniforms from the same seeds.
#include <array>
#include <cstdint>

#include "ops/host_device.hpp"

namespace varps {

// Philox4x32-10 (Salmon et al. 2011).
VARPS_HOST_DEVICE inline std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> c, std::array<uint32_t, 2> k) {
  constexpr uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(M0) * c[0];
    const uint64_t p1 = static_cast<uint64_t>(M1) * c[2];
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    c = {hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0};
    k[0] += W0;
    k[1] += W1;
  }
  return c;
}

// The draw of token `token_index` of scale `scale_index`: counter (token,
// scale, 0, 0), key (seed low, seed high); the top 53 bits of the first two
// words as a double in [0, 1).
VARPS_HOST_DEVICE inline double token_uniform(uint64_t seed, int scale_index, int64_t token_index) {
  const std::array<uint32_t, 4> r =
      philox4x32_10({static_cast<uint32_t>(token_index), static_cast<uint32_t>(scale_index), 0u, 0u},
                    {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)});
  const uint64_t bits = ((static_cast<uint64_t>(r[0]) << 32) | r[1]) >> 11;
  return static_cast<double>(bits) * 0x1.0p-53;
}

}  // namespace varps
