// The collective timeout: on expiry a census names the ranks that did not arrive, then the job ends.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <string>

namespace mpitrain::comm {

// Describes the collective being waited on, for the message that ends the job.
struct CollectiveId {
  std::string communicator;  // name
  std::string operation;     // "allreduce", "broadcast", ...
  std::uint64_t sequence = 0;  // per-communicator count of collectives, equal on all ranks when in step
  std::uint64_t bytes = 0;
};

// Seconds a collective may take before the job is ended; 0 disables the timeout. Set once at
// start-up from the config (`collective_timeout_s`) or MPITRAIN_COLLECTIVE_TIMEOUT_S.
void set_collective_timeout_seconds(double seconds);
double collective_timeout_seconds();

// Called when a collective has exceeded the timeout: exchanges (sequence, operation) with
// every other rank of `monitor` (a duplicate of the collective's communicator, so the census
// cannot match the collective's own messages), waits a short grace period, prints one line
// naming the collective and the ranks that did not arrive (or arrived at another
// collective) and calls MPI_Abort.
[[noreturn]] void abort_for_timeout(MPI_Comm monitor, const CollectiveId& id);

// Prints "mpitrain: error: rank R: <message>" on stderr and ends every rank of the job.
[[noreturn]] void abort_job(const std::string& message);

}  // namespace mpitrain::comm
