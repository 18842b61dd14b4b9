// Writes one safetensors file atomically, from tensors in memory or streamed to it one tensor at a time.
#pragma once

#include <functional>
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

// The order a file of these tensors holds them in (indices into `specs`).
std::vector<std::size_t> safetensors_file_order(const std::vector<TensorSpec>& specs,
                                                const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

// The same file, streamed: in file order, `bytes_of(k)` (k indexes `specs`) is asked for
// tensor k's bytes when its turn comes and `written(k)` told once they are written, so a
// caller can make each tensor's bytes just in time and free them after.
SafetensorsPlan write_safetensors_streamed(const std::string& path, const std::vector<TensorSpec>& specs,
                                           const std::function<const void*(std::size_t)>& bytes_of,
                                           const std::function<void(std::size_t)>& written,
                                           const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

}  // namespace mpitrain::checkpoint
