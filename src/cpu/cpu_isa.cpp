#include "cpu/cpu_isa.hpp"

#include <cstdlib>

#include "cpu/kernel_path.hpp"
#include "varps/error.hpp"

namespace varps::cpu {

std::string CpuIsa::name() const {
  if (avx512) {
    std::string s = "avx512";
    if (avx512_bf16) s += "+bf16";
    if (avx512_vnni) s += "+vnni";
    return s;
  }
  return avx2_fma ? "avx2" : "portable";
}

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
#endif
  return isa;
}

CpuIsa capped_cpu_isa(const CpuIsa& host, const std::string& cap) {
  if (cap.empty() || cap == "amx" || cap == "avx512") return host;
  if (cap == "avx2") {
    CpuIsa isa;
    isa.avx2_fma = host.avx2_fma;
    return isa;
  }
  throw Error("VARPS_CPU_ISA is '" + cap + "' (expected avx2, avx512 or amx)");
}

CpuIsa cpu_isa_from_environment() {
  const char* cap = std::getenv("VARPS_CPU_ISA");
  return capped_cpu_isa(detect_cpu_isa(), cap ? cap : "");
}

}  // namespace varps::cpu
