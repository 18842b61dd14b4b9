// Loading a ParallelModel's weights: from model_name_or_path at the start and from a checkpoint at resume, each block the dp replicas share read once and broadcast.
#include <set>

#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/torch_bin.h"
#include "runtime/checkpoint/shared_directory.h"
#include "runtime/comm/agreement.h"
#include "runtime/comm/string_collectives.h"
#include "src/models/pretrained.h"
#include "src/train/parallel_model.h"

namespace mpitrain::train {

bool ParallelModel::replicas_read_once(const std::string& setting, RunLog& log) const {
  if (setting != "auto" || mesh_->dp_size() == 1) return setting != "false";
  const auto hosts = comm::allgather_strings(mesh_->dp().cpu_communicator(), checkpoint::host_name());
  const bool several = std::set<std::string>(hosts.begin(), hosts.end()).size() > 1;
  if (!several) log.info("read_once auto: the dp ranks share one host (and its page cache): each reads what it needs");
  return several;
}

void ParallelModel::read_source_weights(RunLog& log) {
  std::unique_ptr<checkpoint::HfWeights> weights;
  comm::run_agreed(mesh_->world(), [&] {
    weights = std::make_unique<checkpoint::HfWeights>(checkpoint::open_model_weights(source_dir_));
  });
  const auto placements = model_->placements();
  std::vector<checkpoint::BlockToRead> blocks;
  std::size_t i = 0;
  for (const auto& item : model_->named_parameters()) {
    const auto& placement = placements[i++].second;
    const auto name = item.key();
    blocks.push_back({item.value(), [this, &weights, name, placement] {
                        return models::read_weight_block(*model_, *weights, name, placement);
                      }});
  }
  // Unsharded (the only caller): dp_replicas() is the dp group unless read_once is off.
  const auto stats = checkpoint::read_once(mesh_->world(), dp_replicas(), blocks);
  log.info(source_dir_ + ": " + checkpoint::read_figures(stats) +
           (stats.bytes_read < stats.bytes_needed ? " (the rest came from the other dp ranks)" : ""));
}

checkpoint::ReadOnceStats ParallelModel::load_weights(const checkpoint::CheckpointReader& reader) {
  comm::run_agreed(mesh_->world(), [&] {
    if (!lora_) return models::require_no_foreign_tensors(*model_, reader);
    // An adapter file: exactly the adapter's tensors.
    std::set<std::string> names;
    for (const auto& t : trained_) names.insert(t.name);
    for (const auto& name : reader.names())
      if (!names.count(name))
        throw checkpoint::CheckpointError(reader.dir(), "tensor '" + name + "' is not one of this run's adapter tensors");
  });
  // Sharded, each rank reads its own shard of each tensor; else the dp replicas read each once.
  std::vector<checkpoint::BlockToRead> blocks;
  for (const auto& t : trained_)
    blocks.push_back({t.tensor, [&reader, &t] { return models::read_placed(reader, t.name, t.placement, t.tensor.sizes()); }});
  return checkpoint::read_once(mesh_->world(), dp_replicas(), blocks);
}

}  // namespace mpitrain::train
