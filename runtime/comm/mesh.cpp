// The device mesh: world = dp x tp, with the dp and tp sub-communicators of this rank.
#include "runtime/comm/mesh.h"

#include <stdexcept>
#include <string>

namespace mpitrain::comm {

Mesh::Mesh(std::shared_ptr<Communicator> world, int tp) : world_(std::move(world)) {
  const int size = world_->size();
  if (tp <= 0 || size % tp != 0)
    throw std::invalid_argument("tensor_parallel_size " + std::to_string(tp) + " does not divide the " +
                                std::to_string(size) + " ranks of the job");
  const int rank = world_->rank();
  // Both splits are collective over the world and taken in this order on every rank.
  tp_ = world_->split(rank / tp, rank % tp, "tp");
  dp_ = world_->split(rank % tp, rank / tp, "dp");
}

}  // namespace mpitrain::comm
