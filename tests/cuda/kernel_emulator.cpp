// Built with the CUDA backend only: it needs the toolkit's headers.
#ifdef VARPS_HAVE_CUDA
#include "cuda/kernel_emulator.hpp"

#include <barrier>
#include <bit>
#include <cstddef>
#include <cstring>
#include <deque>
#include <stdexcept>
#include <thread>
#include <type_traits>
#include <vector>

#include "cuda/dynamic_shared.cuh"
#include "cuda/mma_m16n8k16.cuh"

thread_local uint3 threadIdx;
thread_local uint3 blockIdx;
thread_local dim3 blockDim;
thread_local dim3 gridDim;

namespace varps::testing::emulator {
namespace {

constexpr int kWarp = 32;

// What a warp's lanes hand each other between two of its barriers.
struct Warp {
  std::barrier<> sync{kWarp};
  alignas(8) unsigned char value[kWarp][8];
  uint32_t a[kWarp][4];
  uint32_t b[kWarp][2];
};

struct Block {
  Block(int threads, size_t shared_bytes)
      : sync(threads),
        warps(threads / kWarp),
        dynamic_shared((shared_bytes + sizeof(std::max_align_t) - 1) / sizeof(std::max_align_t)) {}
  std::barrier<> sync;
  std::deque<Warp> warps;
  std::vector<std::max_align_t> dynamic_shared;
};

thread_local Block* this_block = nullptr;

int lane() { return static_cast<int>(threadIdx.x) % kWarp; }
Warp& this_warp() { return this_block->warps[threadIdx.x / kWarp]; }

template <typename T>
float value_of(uint32_t reg, int half) {
  const auto bits = static_cast<uint16_t>(half ? reg >> 16 : reg & 0xffffu);
  if constexpr (std::is_same_v<T, __half>) {
    __half_raw raw;
    raw.x = bits;
    return __half2float(__half(raw));
  } else {
    return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
  }
}

}  // namespace

void run_grid(dim3 grid, dim3 block, size_t shared_bytes, const std::function<void()>& body) {
  if (block.y != 1 || block.z != 1 || block.x % kWarp != 0 || block.x == 0)
    throw std::invalid_argument("emulator: blocks must be a whole number of warps in x");
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        Block state(static_cast<int>(block.x), shared_bytes);
        std::vector<std::jthread> threads;
        threads.reserve(block.x);
        for (unsigned x = 0; x < block.x; ++x)
          threads.emplace_back([&, x] {
            threadIdx = uint3{x, 0, 0};
            blockIdx = uint3{bx, by, bz};
            blockDim = block;
            gridDim = grid;
            this_block = &state;
            body();
            // An exited thread no longer holds up its block or warp.
            this_warp().sync.arrive_and_drop();
            state.sync.arrive_and_drop();
          });
      }
}

}  // namespace varps::testing::emulator

using varps::testing::emulator::lane;
using varps::testing::emulator::this_block;
using varps::testing::emulator::this_warp;

void __syncthreads() { this_block->sync.arrive_and_wait(); }

void* emulated_dynamic_shared() { return this_block->dynamic_shared.data(); }

namespace varps::testing::emulator {

void warp_exchange(const void* mine, void* got, size_t bytes, int from) {
  if (bytes > sizeof(Warp::value[0])) throw std::invalid_argument("emulator: shuffles of at most 8 bytes");
  auto& w = this_warp();
  std::memcpy(w.value[lane()], mine, bytes);
  w.sync.arrive_and_wait();
  std::memcpy(got, w.value[from], bytes);
  w.sync.arrive_and_wait();  // the values may be overwritten
}

}  // namespace varps::testing::emulator

namespace varps::cuda {

// mma.m16n8k16 from the PTX ISA's fragment layouts, element by element:
// lane = 4·g + t holds A(g, 2t..2t+1) in a[0], A(g + 8, ·) in a[1], and
// columns + 8 in a[2], a[3]; B(2t..2t+1, g) in b0 and rows + 8 in b1;
// C(g, 2t..2t+1) in c[0], c[1] and C(g + 8, ·) in c[2], c[3].
template <typename T>
void emulated_mma(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  using varps::testing::emulator::value_of;
  auto& w = this_warp();
  const int me = lane();
  for (int i = 0; i < 4; ++i) w.a[me][i] = a[i];
  w.b[me][0] = b0;
  w.b[me][1] = b1;
  w.sync.arrive_and_wait();
  auto A = [&](int row, int k) { return value_of<T>(w.a[4 * (row % 8) + (k % 8) / 2][row / 8 + 2 * (k / 8)], k % 2); };
  auto B = [&](int k, int col) { return value_of<T>(w.b[4 * col + (k % 8) / 2][k / 8], k % 2); };
  const int g = me / 4, t = me % 4;
  for (int i = 0; i < 4; ++i) {
    const int row = g + 8 * (i / 2), col = 2 * t + i % 2;
    float sum = c[i];
    for (int k = 0; k < 16; ++k) sum += A(row, k) * B(k, col);
    c[i] = sum;
  }
  w.sync.arrive_and_wait();  // the fragments may be overwritten
}

template void emulated_mma<__nv_bfloat16>(float[4], const uint32_t[4], uint32_t, uint32_t);
template void emulated_mma<__half>(float[4], const uint32_t[4], uint32_t, uint32_t);

}  // namespace varps::cuda

#endif  // VARPS_HAVE_CUDA
