// The collective save: every rank's blocks into one HF directory (gather to rank 0, parallel writes) or per-rank shards.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/checkpoint/assign_writers.h"
#include "runtime/checkpoint/hf_index.h"
#include "runtime/checkpoint/host_staging.h"
#include "runtime/checkpoint/layout.h"
#include "runtime/comm/communicator.h"

namespace mpitrain::checkpoint {

// How parallel mode writes: collective MPI-IO writes through subarray file views (each file in
// rounds of about StagingOptions::ahead_bytes per rank)
// (MPI-IO aggregates strided blocks: measured 0.77 of raw disk speed against pwrite's 0.54
// for 4 KB column runs), or each rank's pwrite of its runs (as fast or faster for contiguous
// blocks). kAuto takes MPI-IO when some writer block is strided (more than one run).
enum class SaveIo { kAuto, kMpiio, kPosix };
SaveIo parse_save_io(const std::string& name);  // auto | mpiio | posix

struct LocalTensor {
  TensorLayout layout;
  // Contiguous tensor holding layout.block (shape = block sizes), on the CPU or a GPU (then
  // staged to the host in bounded chunks while the save writes). In another dtype than
  // layout.dtype it is converted one block at a time, just before the block is written.
  torch::Tensor data;
};

struct DistributedSaveOptions {
  SaveMode mode = SaveMode::kGather;
  std::uint64_t max_shard_size = 5'000'000'000;
  std::uint64_t gather_window_bytes = 64u << 20;  // rank 0's receive buffer in gather mode
  std::string single_file = kSingleWeightsFile;    // the weights file's name when not sharded
  SaveIo io = SaveIo::kAuto;  // parallel mode
  StagingOptions staging;     // blocks on a GPU or in another dtype
  // Parallel and sharded saves first check that every rank sees `dir` (require_shared_directory);
  // a caller that checked its root already may skip it.
  bool check_shared_directory = true;
};

// What one rank's save cost it.
struct SaveStats {
  std::uint64_t peak_host_copy_bytes = 0;  // staged (GPU or converted) blocks held at once
};

// Collective over `comm`. `tensors` are in state-dict order with the same names, shapes and
// dtypes on every rank; the distinct blocks of each tensor over the ranks must tile it (ranks
// with equal blocks hold copies: one writes, as assign_writers picks for options.mode). The
// weight files appear under their final names only when complete (temporary name, fsync,
// rename); stale weight files of an earlier save are removed. Errors (disk full, a rank's
// I/O failure) are raised on every rank.
SaveStats save_distributed(comm::Communicator& comm, const std::string& dir, const std::vector<LocalTensor>& tensors,
                           const DistributedSaveOptions& options);

}  // namespace mpitrain::checkpoint
