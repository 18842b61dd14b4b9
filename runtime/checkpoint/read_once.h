// Reading replicated blocks once: of the ranks that need the same block (a dp group's replicas), one reads it from the files, the reads balanced by bytes, and broadcasts it to the others.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "runtime/comm/communicator.h"

namespace mpitrain::checkpoint {

struct BlockToRead {
  torch::Tensor target;                 // where the block goes on this rank (a parameter, a moment)
  // Reads it from the files (target's shape; any dtype, on the CPU); an undefined tensor leaves
  // the target as it is (alike on every rank, as a new task head is).
  std::function<torch::Tensor()> read;
};

// What one rank's part in read_once cost it.
struct ReadOnceStats {
  std::uint64_t bytes_read = 0, bytes_needed = 0;  // of the blocks this rank read, of all it needed
  double seconds = 0;
};

// "read 1.2 of the 4.8 MB this rank needs in 0.05 s" (the log's line of what a load read).
std::string read_figures(const ReadOnceStats& stats);
// The figures of two loads (the weights and the moments of a resume) as one.
ReadOnceStats operator+(const ReadOnceStats& a, const ReadOnceStats& b);

// Collective over `world` and `replicas`. Every rank of `replicas` lists the same blocks in
// the same order (equal shapes: they hold copies of the same values). Each block's reader is
// chosen by balancing bytes over the replicas; it reads the block into its target, every
// read agreed over `world` (a failure, e.g. a missing tensor, is every rank's error, and no
// broadcast starts); then each block is broadcast from its reader. With `replicas` null every
// rank reads all of its blocks itself (the blocks are no one else's).
ReadOnceStats read_once(comm::Communicator& world, comm::Communicator* replicas, const std::vector<BlockToRead>& blocks);

}  // namespace mpitrain::checkpoint
