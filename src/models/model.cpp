// Parameter placements: which block of which HF tensor each of a model's (possibly tp-sliced) parameters is.
#include "src/models/model.h"

#include <map>

#include "runtime/checkpoint/checkpoint_error.h"

namespace mpitrain::models {

ParameterPlacement place(const std::vector<std::int64_t>& local_shape, const Shard& shard, int tp_size) {
  ParameterPlacement p;
  p.shape = local_shape;
  if (shard.dim < 0) {
    p.view = p.shape;
    p.block = checkpoint::Block::whole(p.shape);
    p.replicas = tp_size;
    p.partial_gradient = shard.partial_gradient && tp_size > 1;  // a LoRA factor beside a split weight
    return p;
  }
  const auto d = static_cast<std::size_t>(shard.dim);
  const auto local_part = local_shape[d] / shard.parts;
  p.shape[d] = local_shape[d] * shard.count;
  p.view = p.shape;
  std::size_t inner = d;
  if (shard.parts > 1) {
    p.view[d] = local_part * shard.count;
    p.view.insert(p.view.begin() + static_cast<std::ptrdiff_t>(d), shard.parts);
    inner = d + 1;
  }
  p.block = checkpoint::Block::whole(p.view);
  p.block.offsets[inner] = shard.index * local_part;
  p.block.sizes[inner] = local_part;
  p.replicas = static_cast<int>(tp_size / shard.count);
  p.partial_gradient = shard.partial_gradient && p.replicas > 1;
  return p;
}

int forward_group(const std::string& name, std::int64_t layers, std::initializer_list<const char*> inputs,
                  const char* final_prefix) {
  std::size_t start = 0;
  while (start < name.size()) {
    const auto end = std::min(name.find('.', start), name.size());
    const auto part = name.substr(start, end - start);
    if (!part.empty() && part.find_first_not_of("0123456789") == std::string::npos) return 1 + std::stoi(part);
    start = end + 1;
  }
  for (const char* prefix : inputs)
    if (name.rfind(prefix, 0) == 0) return 0;
  return static_cast<int>(layers) + (name.rfind(final_prefix, 0) == 0 ? 1 : 2);
}

std::vector<int> HfModel::parameter_groups() const {
  std::vector<int> out;
  for (const auto& item : named_parameters()) out.push_back(parameter_group(item.key()));
  return out;
}

HfModel::HfModel(nlohmann::json config, TensorParallelPtr tp)
    : config_(std::move(config)), tp_(tp ? std::move(tp) : std::make_shared<const parallel::TensorParallel>()) {}

std::vector<std::pair<std::string, ParameterPlacement>> HfModel::placements() const {
  std::map<std::string, Shard> shards;
  for (const auto& item : named_modules("", /*include_self=*/false)) {
    const auto* layer = dynamic_cast<const ShardedLayer*>(item.value().get());
    if (!layer) continue;
    for (const auto& [local, shard] : layer->shards()) shards[item.key().empty() ? local : item.key() + "." + local] = shard;
  }
  std::vector<std::pair<std::string, ParameterPlacement>> out;
  for (const auto& item : named_parameters()) {
    const auto it = shards.find(item.key());
    out.emplace_back(item.key(), place(item.value().sizes().vec(), it == shards.end() ? Shard{} : it->second, tp_->size()));
  }
  return out;
}

void HfModel::complete_label_maps(std::int64_t num_labels) {
  if (num_labels == 2 || config_.contains("id2label")) return;
  nlohmann::json id2label = nlohmann::json::object(), label2id = nlohmann::json::object();
  for (std::int64_t i = 0; i < num_labels; ++i) {
    id2label[std::to_string(i)] = "LABEL_" + std::to_string(i);
    label2id["LABEL_" + std::to_string(i)] = i;
  }
  complete_config({{"id2label", id2label}, {"label2id", label2id}});
}

void HfModel::require_divisible_by_tp(const std::string& source, const std::string& key, std::int64_t value) const {
  if (value % tp_->size() != 0)
    throw checkpoint::CheckpointError(source, key + " " + std::to_string(value) + " is not divisible by tensor_parallel_size " +
                                                  std::to_string(tp_->size()));
}

torch::Tensor HfModel::causal_lm_logits(const torch::Tensor& hidden, const std::shared_ptr<Linear>& head,
                                        const torch::Tensor& tied_embedding, int head_group) const {
  const auto h = tensor_parallel().copy_to_region(hidden);
  if (head) return run_groups({head_group}, [&] { return head->forward(h); });
  return run_groups({0}, [&] { return torch::linear(h, tied_embedding); });
}

}  // namespace mpitrain::models
