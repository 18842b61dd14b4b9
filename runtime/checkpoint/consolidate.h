// Turns a sharded save into a standard HF directory, the ranks sharing its blocks by bytes.
#pragma once

#include <cstdint>
#include <string>

#include "runtime/comm/communicator.h"

namespace mpitrain::checkpoint {

// Turns a sharded save into a standard HF directory (and copies the other files); collective
// over `comm`: the ranks share the blocks by bytes (one process, or mpirun to go faster).
// A training checkpoint's recorded checksums are verified first (the ranks share the
// hashing), unless `verify_checksums` is false. Throws comm::AgreedError with the same
// message on every rank.
void consolidate_sharded(comm::Communicator& comm, const std::string& source_dir, const std::string& output_dir,
                         std::uint64_t max_shard_size, bool verify_checksums = true);

}  // namespace mpitrain::checkpoint
