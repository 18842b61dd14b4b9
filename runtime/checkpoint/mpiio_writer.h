// One collective MPI-IO write per file: every rank's blocks through a file view of subarrays, so MPI-IO can aggregate strided blocks.
#pragma once

#include <mpi.h>

#include <cstdint>
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

// Collective over `comm`: opens `path` (created and sized beforehand), sets a view of this
// rank's blocks (in file order), writes them with MPI_File_write_all and syncs. A rank with
// no block still takes part. Throws CheckpointError naming `path` on an MPI-IO error.
void write_blocks_collectively(MPI_Comm comm, const std::string& path, std::vector<FileBlock> blocks);

}  // namespace mpitrain::checkpoint
