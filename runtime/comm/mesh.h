// The device mesh: world = dp x tp, with the dp and tp sub-communicators of this rank.
#pragma once

#include <memory>

#include "runtime/comm/communicator.h"

namespace mpitrain::comm {

// Ranks are laid out tp-major: the tp ranks of a group are consecutive (rank = dp_index * tp +
// tp_index), so tensor parallelism, the chattiest, stays inside a node.
class Mesh {
 public:
  // Collective over `world`; throws std::invalid_argument when tp does not divide the world.
  Mesh(std::shared_ptr<Communicator> world, int tensor_parallel_size);

  int dp_size() const { return dp_->size(); }
  int tp_size() const { return tp_->size(); }
  int dp_rank() const { return dp_->rank(); }
  int tp_rank() const { return tp_->rank(); }
  Communicator& world() const { return *world_; }
  Communicator& dp() const { return *dp_; }
  Communicator& tp() const { return *tp_; }
  std::shared_ptr<Communicator> dp_ptr() const { return dp_; }
  std::shared_ptr<Communicator> tp_ptr() const { return tp_; }

 private:
  std::shared_ptr<Communicator> world_, dp_, tp_;
};

}  // namespace mpitrain::comm
