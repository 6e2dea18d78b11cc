#pragma once
// Which of the processor's vector and matrix extensions the CPU kernels may
// use: what the processor and the operating system offer, capped by
// VARPS_CPU_ISA (avx2, avx512 or amx) so that a host can be measured as a
// lesser one, and the kernel libraries the build has (oneDNN). Read once,
// when a backend is made; the kernels are chosen from it at run time, so one
// build serves every x86-64 host.
#include <string>

namespace varps::cpu {

struct CpuIsa {
  bool avx2_fma = false;     // AVX2 and FMA (the build's baseline on x86-64)
  bool avx512 = false;       // AVX-512 F, BW, DQ and VL
  bool avx512_bf16 = false;  // AVX512_BF16: vdpbf16ps
  bool avx512_vnni = false;  // AVX512_VNNI: vpdpbusd
  // AMX tiles with int8 (tdpbusd) and bf16 (tdpbf16ps) products, the
  // operating system having granted this process their state.
  bool amx_int8 = false;
  bool amx_bf16 = false;
  // The build links oneDNN (cpu/onednn_int8.hpp) and VARPS_CPU_ONEDNN is not
  // "off".
  bool onednn = false;

  // "avx512+bf16+vnni+amx", "avx2", "portable": what the kernels use.
  std::string name() const;
};

// The extensions this processor has and the kernels compiled into this build
// can use (none on a build with the portable kernels). On Linux it asks for
// the AMX tile state (arch_prctl ARCH_REQ_XCOMP_PERM) where the processor
// has AMX: a process must ask before its first tile instruction.
CpuIsa detect_cpu_isa();

// Whether the processor has AMX tiles (CPUID), whatever the operating
// system grants or a cap allows.
bool processor_has_amx_tiles();

// detect_cpu_isa() capped by `cap`: "" (no cap), "avx2", "avx512" (no AMX)
// or "amx" (no cap). Throws varps::Error for another name.
CpuIsa capped_cpu_isa(const CpuIsa& host, const std::string& cap);

// detect_cpu_isa() capped by the environment's VARPS_CPU_ISA, without
// oneDNN where VARPS_CPU_ONEDNN is "off" (and an Error for a value other
// than "on" or "off").
CpuIsa cpu_isa_from_environment();

}  // namespace varps::cpu
