// Inspection of a safetensors file or HF directory: every tensor, totals, and every format problem found.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/checkpoint/safetensors_header.h"

namespace mpitrain::checkpoint {

struct InspectedTensor {
  std::string file;  // file name relative to the inspected directory
  TensorEntry entry;
};

struct InspectReport {
  std::vector<InspectedTensor> tensors;  // sorted by name
  std::vector<std::string> files;        // weight files read
  std::vector<std::string> problems;     // one line each; empty means well-formed
  std::uint64_t total_bytes = 0;
  std::uint64_t total_elements = 0;
};

// Never throws for a format problem: each one is recorded and inspection goes on with what
// can still be read.
InspectReport inspect_checkpoint(const std::string& path);

}  // namespace mpitrain::checkpoint
