// Which rank writes each block of a save: a pure function of every rank's layout (no MPI here).
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/checkpoint/layout.h"

namespace mpitrain::checkpoint {

enum class SaveMode {
  kGather,    // blocks stream to rank 0 in bounded windows; rank 0 writes each at its planned offset
  kParallel,  // every writer rank writes its own blocks straight into the consolidated files
  kSharded,   // every rank writes its blocks to its own file; one index says where each block sits
};
SaveMode parse_save_mode(const std::string& name);  // gather | parallel | sharded; std::invalid_argument

// One tensor as the save sees it on every rank: rank r's block of it (empty: r holds none) and
// the bytes of one element as saved.
struct TensorBlocks {
  std::vector<Block> by_rank;
  std::uint64_t element_size = 4;
};

// The replica rule: ranks whose blocks of a tensor are equal (same offsets and sizes, not
// empty) hold copies of the same values (DP replicas; tp ranks sharing a kv slice), and
// exactly one of them writes it. Returns writes[tensor][rank].
// - kGather: the lowest rank of each copy group writes (rank 0 then receives only the blocks
//   it lacks);
// - kParallel, kSharded: largest blocks first, each onto the least loaded rank of its group by
//   bytes so far (ties to the lower rank), so every rank writes about the same number of bytes.
// The same inputs give the same answer on every rank.
std::vector<std::vector<bool>> assign_writers(const std::vector<TensorBlocks>& tensors, SaveMode mode);

}  // namespace mpitrain::checkpoint
