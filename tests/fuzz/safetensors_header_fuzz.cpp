// libFuzzer target: any bytes as a whole safetensors file must parse or fail with CheckpointError, nothing else.
#include <cstddef>
#include <cstdint>

#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/safetensors_header.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    auto header = mpitrain::checkpoint::parse_safetensors(data, size, size, "fuzz.safetensors");
    // Accepted headers must describe the buffer exactly.
    std::uint64_t covered = 0;
    for (const auto& t : header.tensors) covered += t.nbytes();
    if (header.data_start + covered != size) __builtin_trap();
  } catch (const mpitrain::checkpoint::CheckpointError&) {
  }
  return 0;
}
