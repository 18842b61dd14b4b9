// save_mode sharded: every rank's written blocks in a shard file of its own, and the index (sharded_index.json) that says where each block sits.
#pragma once

#include <string>
#include <vector>

#include "runtime/checkpoint/distributed_save.h"
#include "runtime/checkpoint/safetensors_header.h"
#include "runtime/checkpoint/save_blocks.h"
#include "runtime/checkpoint/sharded_index.h"

namespace mpitrain::checkpoint {

// "shard-<rank, 5 digits>.safetensors"
std::string shard_file(int rank);

// Collective: each rank streams its written blocks into its shard file; rank 0 then writes the
// index, last (a sharded save without it is incomplete).
void save_sharded(comm::Communicator& comm, const std::string& dir, const SaveBlocks& blocks, HostStaging& staged);

}  // namespace mpitrain::checkpoint
