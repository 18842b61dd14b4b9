// NumPy .npy files (version 1.0, little-endian float32, C order): the logits exchange format.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mpitrain::checkpoint {

struct NpyArray {
  std::vector<std::int64_t> shape;
  std::vector<float> data;
};

void write_npy_float32(const std::string& path, const std::vector<std::int64_t>& shape, const float* data);
// Reads '<f4' C-order arrays; throws CheckpointError naming the file for anything else.
NpyArray read_npy_float32(const std::string& path);

}  // namespace mpitrain::checkpoint
