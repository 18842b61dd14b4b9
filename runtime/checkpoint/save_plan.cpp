// The plan of an HF weights save: which file each tensor goes to and at which byte offset, before any byte moves.
#include "runtime/checkpoint/save_plan.h"

#include <map>

#include "runtime/checkpoint/checkpoint_error.h"

namespace mpitrain::checkpoint {

const PlannedTensor& SavePlan::tensor(const std::string& name) const {
  for (const auto& t : tensors)
    if (t.spec.name == name) return t;
  throw CheckpointError(name, "tensor is not in the save plan");
}

SavePlan plan_hf_save(const std::vector<TensorSpec>& tensors, std::uint64_t max_shard_size, const std::string& single_file) {
  SavePlan plan;
  std::vector<std::uint64_t> sizes;
  for (const auto& t : tensors) {
    sizes.push_back(spec_nbytes(t));
    plan.total_bytes += sizes.back();
  }
  auto shards = plan_shards(sizes, max_shard_size);
  if (shards.empty()) shards.emplace_back();  // no tensors: still one valid, empty file
  plan.sharded = shards.size() > 1;
  plan.index.total_size = plan.total_bytes;
  plan.index.has_total_size = true;
  plan.tensors.resize(tensors.size());
  for (std::size_t s = 0; s < shards.size(); ++s) {
    PlannedFile file;
    file.name = plan.sharded ? shard_file_name(s, shards.size()) : single_file;
    std::vector<TensorSpec> members;
    for (auto i : shards[s]) members.push_back(tensors[i]);
    const auto layout = plan_safetensors(members);
    file.preamble = layout.preamble;
    file.size = layout.file_size;
    std::map<std::string, std::uint64_t> offsets;
    for (const auto& entry : layout.tensors) offsets[entry.name] = layout.data_start() + entry.begin;
    for (auto i : shards[s]) {
      plan.tensors[i] = PlannedTensor{tensors[i], s, offsets.at(tensors[i].name)};
      plan.index.weight_map[tensors[i].name] = file.name;
    }
    plan.files.push_back(std::move(file));
  }
  return plan;
}

}  // namespace mpitrain::checkpoint
