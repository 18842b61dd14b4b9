// Writes one safetensors file atomically from tensors already in memory.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "runtime/checkpoint/safetensors_header.h"

namespace mpitrain::checkpoint {

struct TensorBytes {
  TensorSpec spec;
  const void* data = nullptr;  // dense row-major, spec_nbytes(spec) bytes, little-endian
};

// Returns the plan it wrote (header and offsets), useful to callers that record it.
SafetensorsPlan write_safetensors(const std::string& path, const std::vector<TensorBytes>& tensors,
                                  const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

}  // namespace mpitrain::checkpoint
