// save_mode parallel: every writer rank writes its blocks straight into the consolidated files, through MPI-IO subarray views or its own pwrites.
#pragma once

#include "runtime/checkpoint/distributed_save.h"
#include "runtime/checkpoint/save_blocks.h"

namespace mpitrain::comm {
class MpiCommunicator;
}

namespace mpitrain::checkpoint {

// The MPI communicator parallel mode writes through with MPI-IO, or null for pwrite: asked for
// (or, for kAuto, some writer block is strided) and every block fits MPI's int counts, decided
// from the gathered layouts so every rank takes the same path. On a GPU the world is NCCL's;
// the blocks are host copies by then and go through the MPI communicator it wraps.
const comm::MpiCommunicator* mpiio_communicator(comm::Communicator& comm, const DistributedSaveOptions& options,
                                                const SaveBlocks& blocks);

// Collective: the files of `plan` written by every rank's written blocks (staged in
// staging_order), committed whole; MPI-IO writes each file in rounds of about `round_bytes`
// of host copies per rank.
void save_parallel(comm::Communicator& comm, const std::string& dir, const SaveBlocks& blocks, HostStaging& staged,
                   const SavePlan& plan, const comm::MpiCommunicator* mpiio, std::uint64_t round_bytes);

}  // namespace mpitrain::checkpoint
