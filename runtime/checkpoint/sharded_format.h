// save_mode sharded: every rank's written blocks in a shard file of its own, and the index (sharded_index.json) that says where each block sits.
#pragma once

#include <string>
#include <vector>

#include "runtime/checkpoint/distributed_save.h"
#include "runtime/checkpoint/safetensors_header.h"
#include "runtime/checkpoint/save_blocks.h"

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

// "shard-<rank, 5 digits>.safetensors"
std::string shard_file(int rank);

// Collective: each rank streams its written blocks into its shard file; rank 0 then writes the
// index, last (a sharded save without it is incomplete).
void save_sharded(comm::Communicator& comm, const std::string& dir, const SaveBlocks& blocks, HostStaging& staged);

// The index of `dir`, checked: every block inside its tensor, none overlapping, together
// covering it, every file inside the directory. Throws CheckpointError naming the file.
std::vector<ShardedTensor> read_sharded_index(const std::string& dir);

}  // namespace mpitrain::checkpoint
