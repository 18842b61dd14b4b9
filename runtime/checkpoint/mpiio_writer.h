// Collective MPI-IO writes of a file in rounds: every rank's blocks of a round through a file view of subarrays, so MPI-IO can aggregate strided blocks.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "runtime/checkpoint/layout.h"

namespace mpitrain::checkpoint {

// One block of one tensor of a file, as this rank holds it (packed row-major).
struct FileBlock {
  std::uint64_t tensor_offset = 0;    // of the tensor's first byte in the file
  std::vector<std::int64_t> coords;   // the tensor's shape (or view) the block is taken in
  Block block;
  std::size_t element_size = 0;
  const void* data = nullptr;         // block.numel() * element_size bytes
};

// Whether MPI's int counts can describe a block of a tensor with these coordinates (every
// dim and the block's bytes below 2^31); the same answer on every rank for the same input.
bool fits_mpiio(const std::vector<std::int64_t>& coords, const Block& block, std::size_t element_size);

// Collective over `comm`: opens `path` (created and sized beforehand), then in each of
// `rounds` rounds (the same count on every rank) sets a view of this rank's blocks of that
// round and writes them with MPI_File_write_all; syncs and closes. `blocks_of(r)` is asked for
// round r's blocks just before its write and `written(r)` told after it, so a rank holds one
// round's host copies at a time; a rank with no block in a round still takes part. Every
// collective call is made whatever failed before (a rank that skipped one would leave the
// others waiting), and after a failure blocks_of is no longer asked: the first error
// (blocks_of's, or a CheckpointError naming `path` for MPI-IO's) is thrown after the close.
void write_rounds_collectively(MPI_Comm comm, const std::string& path, int rounds,
                               const std::function<std::vector<FileBlock>(int round)>& blocks_of,
                               const std::function<void(int round)>& written);

}  // namespace mpitrain::checkpoint
