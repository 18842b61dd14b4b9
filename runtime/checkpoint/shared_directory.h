// Whether every rank sees the same directory: a multi-node job saving to node-local storage fails up front, with a line that says so.
#pragma once

#include <string>

#include "runtime/comm/communicator.h"

namespace mpitrain::checkpoint {

// Collective: rank 0 creates `dir` and writes a probe file with a fresh token in it; every
// other rank must read the token back (a few tries, for network filesystems' caches). Throws
// comm::AgreedError on every rank when some rank cannot: "<dir>: is not on a filesystem
// every rank shares: rank R (on host H) cannot see the files rank 0 writes there; <why>".
// The probe is removed either way. One rank: nothing to check.
void require_shared_directory(comm::Communicator& comm, const std::string& dir, const std::string& why);
// This machine's name (gethostname): ranks with equal names share a page cache and a /dev/shm.
std::string host_name();

}  // namespace mpitrain::checkpoint
