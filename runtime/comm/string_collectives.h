// Text over a Communicator: one rank's string to all, every rank's string to all (CPU tensors underneath).
#pragma once

#include <string>
#include <vector>

#include "runtime/comm/communicator.h"

namespace mpitrain::comm {

// Collective over `comm`: `root`'s `mine`, on every rank (other ranks' `mine` is ignored).
// Two broadcasts: the length, then the bytes (none for an empty string).
std::string broadcast_string(Communicator& comm, const std::string& mine, int root = 0);

// Collective over `comm`: every rank's `mine`, in rank order, on every rank. One all-gather of
// the lengths and one of the bytes.
std::vector<std::string> allgather_strings(Communicator& comm, const std::string& mine);

}  // namespace mpitrain::comm
