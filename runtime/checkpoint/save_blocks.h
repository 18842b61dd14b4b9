// Inside a collective save: every rank's block of every tensor, which rank writes each, and this rank's blocks as the writes ask for them.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "runtime/checkpoint/assign_writers.h"
#include "runtime/checkpoint/distributed_save.h"
#include "runtime/checkpoint/host_staging.h"
#include "runtime/checkpoint/save_plan.h"
#include "runtime/comm/communicator.h"

namespace mpitrain::checkpoint {

struct RankBlock {
  int rank;
  Block block;
  bool writer;  // as assign_writers decided
};

// The save's view of the ranks: this rank's tensors, and every rank's block of each with its
// writer. Collective to make (one all-gather of a fixed-size integer table); the same on every
// rank after.
class SaveBlocks {
 public:
  SaveBlocks(comm::Communicator& comm, const std::vector<LocalTensor>& tensors, SaveMode mode);

  const std::vector<LocalTensor>& tensors() const { return tensors_; }
  const std::vector<RankBlock>& of(std::size_t tensor) const { return layouts_[tensor]; }
  int rank() const { return rank_; }
  // Whether this rank writes a block of tensor i (its writer, with a non-empty block).
  bool writes(std::size_t i) const;
  std::vector<std::size_t> written() const;  // the tensors this rank writes a block of, in index order
  std::vector<TensorSpec> specs() const;     // the whole tensors, for the HF file plan
  // The blocks `written` (as written() returns them), as a shard file holds them.
  std::vector<TensorSpec> written_specs(const std::vector<std::size_t>& written) const;

 private:
  const std::vector<LocalTensor>& tensors_;
  std::vector<std::vector<RankBlock>> layouts_;
  int rank_;
};

// Block i as staged to the host (the LocalTensor's own data when already there in its dtype),
// checked; a staging failure (a GPU copy) names the tensor.
const torch::Tensor& staged_block(const SaveBlocks& blocks, HostStaging& staged, std::size_t i);
// The same check before staging, where the data's dtype may still be converted.
void check_block_shape(const LocalTensor& t);

// The order the writes ask for the blocks (HostStaging stages them in it): index order, except
// file by file for MPI-IO (`plan` given) and the shard file's order for a sharded save.
std::vector<std::size_t> staging_order(const SaveBlocks& blocks, SaveMode mode, const SavePlan* plan);

}  // namespace mpitrain::checkpoint
