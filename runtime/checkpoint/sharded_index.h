// The index of a sharded save (sharded_index.json): where each block of each tensor sits, read and checked without torch (inspect reads it too).
#pragma once

#include <string>
#include <vector>

#include "runtime/checkpoint/layout.h"
#include "runtime/checkpoint/safetensors_header.h"

namespace mpitrain::checkpoint {

// One block of a tensor as a sharded save holds it: the shard file and where in the tensor.
struct SavedBlock {
  std::string file;
  Block block;
};

// One tensor of the index: its spec, the coordinates its blocks are given in, and its blocks.
struct ShardedTensor {
  TensorSpec spec;
  std::vector<std::int64_t> view;  // the shape, unless the saver viewed it otherwise
  std::vector<SavedBlock> blocks;
};

// The index of `dir`, checked: every block inside its tensor, none overlapping, together
// covering it, every file inside the directory. Throws CheckpointError naming the file.
std::vector<ShardedTensor> read_sharded_index(const std::string& dir);

}  // namespace mpitrain::checkpoint
