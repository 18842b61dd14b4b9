// save_mode gather: the writers' blocks stream to rank 0 in bounded windows, and rank 0 writes each at its planned offset.
#pragma once

#include "runtime/checkpoint/distributed_save.h"
#include "runtime/checkpoint/save_blocks.h"

namespace mpitrain::checkpoint {

// Collective: the files of `plan`, written by rank 0 from its own blocks and the others' sent
// in windows of `window` bytes (double-buffered: rank 0 holds two windows beyond its own
// tensors, whatever the model's size), committed whole.
void save_gather(comm::Communicator& comm, const std::string& dir, const SaveBlocks& blocks, HostStaging& staged,
                 const SavePlan& plan, std::uint64_t window);

}  // namespace mpitrain::checkpoint
