// libFuzzer target: any bytes as model.safetensors.index.json must parse or fail with CheckpointError.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/hf_index.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    auto index = mpitrain::checkpoint::parse_shard_index(
        std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.index.json");
    for (const auto& file : index.shard_files())
      if (!mpitrain::checkpoint::is_safe_relative_name(file)) __builtin_trap();  // escapes must never pass
  } catch (const mpitrain::checkpoint::CheckpointError&) {
  }
  return 0;
}
