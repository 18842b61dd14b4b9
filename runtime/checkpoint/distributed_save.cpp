// The collective save: every rank's blocks into one HF directory (gather to rank 0, parallel writes) or per-rank shards.
#include "runtime/checkpoint/distributed_save.h"

#include <optional>

#include "runtime/checkpoint/gather_writer.h"
#include "runtime/checkpoint/parallel_writer.h"
#include "runtime/checkpoint/save_blocks.h"
#include "runtime/checkpoint/save_timing.h"
#include "runtime/checkpoint/sharded_format.h"
#include "runtime/checkpoint/shared_directory.h"
#include "runtime/checkpoint/torch_tensors.h"
#include "runtime/comm/agreement.h"

namespace mpitrain::checkpoint {

SaveIo parse_save_io(const std::string& name) {
  if (name == "auto") return SaveIo::kAuto;
  if (name == "mpiio") return SaveIo::kMpiio;
  if (name == "posix") return SaveIo::kPosix;
  throw std::invalid_argument("save_io '" + name + "' is not one of auto, mpiio, posix");
}

SaveStats save_distributed(comm::Communicator& comm, const std::string& dir, const std::vector<LocalTensor>& tensors,
                           const DistributedSaveOptions& options) {
  std::optional<StageTimer> planning(SaveStage::kPlanning);
  const SaveBlocks blocks(comm, tensors, options.mode);
  // Agreed before any mode's writes, sends or collective file calls begin.
  comm::run_agreed(comm, [&] {
    for (const auto i : blocks.written()) check_block_shape(tensors[i]);
  });
  // Before any bytes: on node-local storage each node would hold its own part of the files.
  if (options.mode != SaveMode::kGather && options.check_shared_directory)
    require_shared_directory(comm, dir, std::string(options.mode == SaveMode::kSharded ? "sharded" : "parallel") +
                                            " saves write there from every rank (save_mode gather writes from rank 0 only)");
  // The blocks this rank writes, copied off a GPU (and converted to the saved dtype) block by
  // block while the writes of earlier ones go on, in the order the writes ask for them.
  std::vector<BlockToStage> written;
  for (std::size_t i = 0; i < tensors.size(); ++i)
    written.push_back({blocks.writes(i) ? tensors[i].data : torch::Tensor(),
                       to_scalar_type(tensors[i].layout.dtype, tensors[i].layout.name)});
  // The copies run on the staging thread, beside the writes: their own time, not the writer's.
  auto finish = [](HostStaging& staged) {
    add_stage_seconds(SaveStage::kStaging, staged.copy_seconds());
    return SaveStats{staged.peak_held_bytes()};
  };
  if (options.mode == SaveMode::kSharded) {
    HostStaging staged(std::move(written), staging_order(blocks, options.mode, nullptr), options.staging);
    planning.reset();
    const StageTimer writing(SaveStage::kWrite);
    save_sharded(comm, dir, blocks, staged);
    return finish(staged);
  }
  const auto plan = plan_hf_save(blocks.specs(), options.max_shard_size, options.single_file);
  const auto* mpiio = mpiio_communicator(comm, options, blocks);
  HostStaging staged(std::move(written), staging_order(blocks, options.mode, mpiio ? &plan : nullptr), options.staging);
  planning.reset();
  const StageTimer writing(SaveStage::kWrite);
  if (options.mode == SaveMode::kParallel)
    // Rounds of half the bound: the next round is staged while this one is written.
    save_parallel(comm, dir, blocks, staged, plan, mpiio, options.staging.ahead_bytes / 2);
  else
    save_gather(comm, dir, blocks, staged, plan, std::max<std::uint64_t>(options.gather_window_bytes, 1));
  return finish(staged);
}

}  // namespace mpitrain::checkpoint
