#include "cpu/cpu_isa.hpp"

#include <cstdlib>

#if defined(__x86_64__)
#include <cpuid.h>
#endif
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "cpu/kernel_path.hpp"
#include "varps/error.hpp"

namespace varps::cpu {

std::string CpuIsa::name() const {
  if (avx512) {
    std::string s = "avx512";
    if (avx512_bf16) s += "+bf16";
    if (avx512_vnni) s += "+vnni";
    if (amx_int8 || amx_bf16) s += "+amx";
    return s;
  }
  return avx2_fma ? "avx2" : "portable";
}

namespace {

// CPUID leaf 7's EDX: its AMX bits are 22 (AMX-BF16), 24 (AMX-TILE) and 25
// (AMX-INT8); 0 where there is no such leaf.
unsigned cpuid_leaf7_edx() {
#if defined(__x86_64__)
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return edx;
#endif
  return 0;
}

// The AMX bits, once Linux has granted the tile data state
// (XFEATURE_XTILEDATA, 18), which a process must ask for before its first
// tile instruction.
void detect_amx(CpuIsa& isa) {
#if defined(__linux__)
  if (!processor_has_amx_tiles()) return;
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0) return;
  const unsigned edx = cpuid_leaf7_edx();
  isa.amx_int8 = (edx >> 25) & 1u;
  isa.amx_bf16 = (edx >> 22) & 1u;
#else
  (void)isa;
#endif
}

}  // namespace

bool processor_has_amx_tiles() { return (cpuid_leaf7_edx() >> 24) & 1u; }

CpuIsa detect_cpu_isa() {
  CpuIsa isa;
#if VARPS_CPU_AVX2
  // __builtin_cpu_supports checks the processor's CPUID bits and, for the
  // AVX and AVX-512 states, that the operating system saves them (XCR0).
  __builtin_cpu_init();
  isa.avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  isa.avx512 = isa.avx2_fma && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  isa.avx512_bf16 = isa.avx512 && __builtin_cpu_supports("avx512bf16");
  isa.avx512_vnni = isa.avx512 && __builtin_cpu_supports("avx512vnni");
  if (isa.avx512) detect_amx(isa);
#endif
#if VARPS_HAVE_ONEDNN
  isa.onednn = true;
#endif
  return isa;
}

CpuIsa capped_cpu_isa(const CpuIsa& host, const std::string& cap) {
  if (cap.empty() || cap == "amx") return host;
  if (cap == "avx512") {
    CpuIsa isa = host;
    isa.amx_int8 = isa.amx_bf16 = false;
    return isa;
  }
  if (cap == "avx2") {
    CpuIsa isa;
    isa.avx2_fma = host.avx2_fma;
    isa.onednn = host.onednn;
    return isa;
  }
  throw Error("VARPS_CPU_ISA is '" + cap + "' (expected avx2, avx512 or amx)");
}

CpuIsa cpu_isa_from_environment() {
  const char* cap = std::getenv("VARPS_CPU_ISA");
  CpuIsa isa = capped_cpu_isa(detect_cpu_isa(), cap ? cap : "");
  if (const char* onednn = std::getenv("VARPS_CPU_ONEDNN")) {
    const std::string v = onednn;
    if (v == "off")
      isa.onednn = false;
    else if (v != "on")
      throw Error("VARPS_CPU_ONEDNN is '" + v + "' (expected on or off)");
  }
  return isa;
}

}  // namespace varps::cpu
