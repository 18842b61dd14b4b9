// Picks the widest kernel table the CPU runs, once per process.
#include "src/models/fused/kernels.h"

namespace mpitrain::models::fused {

const KernelTable& kernels() {
  static const KernelTable table = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
      return isa_avx512::table();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return isa_avx2::table();
    return isa_default::table();
  }();
  return table;
}

}  // namespace mpitrain::models::fused
