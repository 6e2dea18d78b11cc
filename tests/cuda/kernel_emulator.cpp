// Built with the CUDA backend only: it needs the toolkit's headers.
#ifdef VARPS_HAVE_CUDA
#include "cuda/kernel_emulator.hpp"

#include <ucontext.h>

#include <bit>
#include <cstddef>
#include <cstring>
#include <exception>
#include <memory>
#include <stdexcept>
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
// Each thread's stack: the kernels keep their arrays in registers or
// shared memory, so a few kilobytes would do.
constexpr size_t kStackBytes = size_t{256} << 10;

// What a warp's lanes hand each other between two of its barriers.
struct Warp {
  alignas(8) unsigned char value[kWarp][8];
  uint32_t a[kWarp][4];
  uint32_t b[kWarp][2];
};

// A thread of the block: its own stack and registers, and where it stands.
struct Fiber {
  ucontext_t context;
  enum class State { Running, AtBlockBarrier, AtWarpBarrier, Returned } state = State::Running;
};

struct Block {
  Block(int threads, size_t shared_bytes)
      : fibers(threads),
        warps(threads / kWarp),
        dynamic_shared((shared_bytes + sizeof(std::max_align_t) - 1) / sizeof(std::max_align_t)),
        votes(threads) {}
  std::vector<Fiber> fibers;
  std::vector<Warp> warps;
  std::vector<std::max_align_t> dynamic_shared;
  std::vector<unsigned char> votes;  // __syncthreads_or's predicates, one per thread
  ucontext_t scheduler;
  const std::function<void()>* body = nullptr;
  unsigned current = 0;  // the fiber running
  std::exception_ptr failure;
};

thread_local Block* this_block = nullptr;

int lane() { return static_cast<int>(threadIdx.x) % kWarp; }
Warp& this_warp() { return this_block->warps[threadIdx.x / kWarp]; }

// The running thread waits at a barrier until the scheduler lets it go.
void wait_at(Fiber::State barrier) {
  Block& b = *this_block;
  Fiber& me = b.fibers[b.current];
  me.state = barrier;
  swapcontext(&me.context, &b.scheduler);
}

void warp_barrier() { wait_at(Fiber::State::AtWarpBarrier); }

void fiber_main() {
  Block& b = *this_block;
  try {
    (*b.body)();
  } catch (...) {
    if (!b.failure) b.failure = std::current_exception();
  }
  b.fibers[b.current].state = Fiber::State::Returned;
}  // back to the scheduler (uc_link)

// Runs warp w's threads, each until it waits at a barrier or returns, then
// the next, letting the warp's barrier go as soon as all its threads that
// have not returned wait there; returns when none does.
void run_warp(Block& b, unsigned w, bool ascending) {
  using State = Fiber::State;
  for (;;) {
    for (int i = 0; i < kWarp; ++i) {
      const unsigned t = w * kWarp + static_cast<unsigned>(ascending ? i : kWarp - 1 - i);
      if (b.fibers[t].state != State::Running) continue;
      b.current = t;
      threadIdx = uint3{t, 0, 0};
      swapcontext(&b.scheduler, &b.fibers[t].context);
      if (b.failure) std::rethrow_exception(b.failure);
    }
    int live = 0, waiting = 0;
    for (int l = 0; l < kWarp; ++l) {
      const State s = b.fibers[w * kWarp + l].state;
      live += s != State::Returned;
      waiting += s == State::AtWarpBarrier;
    }
    if (waiting == 0 || waiting != live) return;
    for (int l = 0; l < kWarp; ++l)
      if (b.fibers[w * kWarp + l].state == State::AtWarpBarrier) b.fibers[w * kWarp + l].state = State::Running;
  }
}

// Runs every warp of the block, one after another, until its threads wait
// at the block's barrier or return, then lets the barrier go, and so on
// until every thread has returned. So warps lie as far apart as the block's
// barriers allow, and the order reverses after each: a missing barrier
// leaves some warp reading what another has not written yet, or has
// already overwritten, in one of the two orders.
void run_block(Block& b, const std::vector<std::unique_ptr<char[]>>& stacks) {
  using State = Fiber::State;
  const unsigned n = static_cast<unsigned>(b.fibers.size()), warps = n / kWarp;
  for (unsigned t = 0; t < n; ++t) {
    ucontext_t& c = b.fibers[t].context;
    getcontext(&c);
    c.uc_stack.ss_sp = stacks[t].get();
    c.uc_stack.ss_size = kStackBytes;
    c.uc_link = &b.scheduler;
    makecontext(&c, fiber_main, 0);
  }
  for (bool ascending = true;; ascending = !ascending) {
    for (unsigned i = 0; i < warps; ++i) run_warp(b, ascending ? i : warps - 1 - i, ascending);
    bool returned = true, at_barrier = true;
    for (const Fiber& f : b.fibers) {
      returned = returned && f.state == State::Returned;
      at_barrier = at_barrier && (f.state == State::Returned || f.state == State::AtBlockBarrier);
    }
    if (returned) return;
    if (!at_barrier)
      throw std::logic_error("emulator: a warp's threads wait at different barriers (a barrier some skip)");
    for (Fiber& f : b.fibers)
      if (f.state == State::AtBlockBarrier) f.state = State::Running;
  }
}

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
  std::vector<std::unique_ptr<char[]>> stacks;
  for (unsigned t = 0; t < block.x; ++t) stacks.emplace_back(new char[kStackBytes]);
  blockDim = block;
  gridDim = grid;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        Block state(static_cast<int>(block.x), shared_bytes);
        state.body = &body;
        blockIdx = uint3{bx, by, bz};
        this_block = &state;
        run_block(state, stacks);
        this_block = nullptr;
      }
}

}  // namespace varps::testing::emulator

using varps::testing::emulator::lane;
using varps::testing::emulator::this_block;
using varps::testing::emulator::this_warp;
using varps::testing::emulator::wait_at;
using varps::testing::emulator::warp_barrier;

void __syncthreads() { wait_at(varps::testing::emulator::Fiber::State::AtBlockBarrier); }

int __syncthreads_or(int predicate) {
  auto& b = *this_block;
  b.votes[threadIdx.x] = predicate != 0;
  __syncthreads();
  int any = 0;
  for (const unsigned char v : b.votes) any |= v;
  __syncthreads();
  // A thread that returns must not vote in later calls.
  b.votes[threadIdx.x] = 0;
  return any;
}

void* emulated_dynamic_shared() { return this_block->dynamic_shared.data(); }

namespace varps::testing::emulator {

void warp_exchange(const void* mine, void* got, size_t bytes, int from) {
  if (bytes > sizeof(Warp::value[0])) throw std::invalid_argument("emulator: shuffles of at most 8 bytes");
  auto& w = this_warp();
  std::memcpy(w.value[lane()], mine, bytes);
  warp_barrier();
  std::memcpy(got, w.value[from], bytes);
  warp_barrier();  // the values may be overwritten
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
  warp_barrier();
  auto A = [&](int row, int k) { return value_of<T>(w.a[4 * (row % 8) + (k % 8) / 2][row / 8 + 2 * (k / 8)], k % 2); };
  auto B = [&](int k, int col) { return value_of<T>(w.b[4 * col + (k % 8) / 2][k / 8], k % 2); };
  const int g = me / 4, t = me % 4;
  for (int i = 0; i < 4; ++i) {
    const int row = g + 8 * (i / 2), col = 2 * t + i % 2;
    float sum = c[i];
    for (int k = 0; k < 16; ++k) sum += A(row, k) * B(k, col);
    c[i] = sum;
  }
  warp_barrier();  // the fragments may be overwritten
}

template void emulated_mma<__nv_bfloat16>(float[4], const uint32_t[4], uint32_t, uint32_t);
template void emulated_mma<__half>(float[4], const uint32_t[4], uint32_t, uint32_t);

}  // namespace varps::cuda

#endif  // VARPS_HAVE_CUDA
