// ParallelModel under LoRA: adapters attached to the frozen base, the adapters (and modules_to_save) as what is trained, and the merged model for the end.
#include <set>

#include "src/models/lora.h"
#include "src/train/parallel_model.h"

namespace mpitrain::train {

std::vector<std::pair<std::string, models::ParameterPlacement>> ParallelModel::attach_lora(const RunArguments& args,
                                                                                           RunLog& log) {
  const auto& l = args.lora;
  if (l.adapter_name_or_path.empty()) {
    lora_ = std::make_unique<models::LoraAdapters>(*model_, l.settings, "lora");
    torch::manual_seed(args.model.init_seed);  // the same factors on every rank, whatever the tp size
    lora_->initialise();
  } else {  // its own settings, as PeftModel.from_pretrained(is_trainable=True)
    lora_ = models::load_adapter(*model_, l.adapter_name_or_path);
    log.info("continuing the adapter " + l.adapter_name_or_path + " (its adapter_config.json sets the LoRA keys)");
  }
  const auto& settings = lora_->settings();
  // The base is frozen: no gradients, no optimizer state, no buckets; modules_to_save stay trained.
  std::set<const void*> trained;
  for (const auto& t : lora_->tensors()) trained.insert(t.tensor.unsafeGetTensorImpl());
  for (auto& p : model_->parameters())
    if (!trained.count(p.unsafeGetTensorImpl())) p.set_requires_grad(false);
  // Each adapter tensor's forward group is its base layer's (zero1/2 buckets follow the model).
  std::map<std::string, int> group_of;
  const auto groups = model_->parameter_groups();
  std::size_t i = 0;
  for (const auto& item : model_->named_parameters()) group_of[item.key()] = groups.at(i++);
  std::int64_t count = 0;
  std::vector<std::pair<std::string, models::ParameterPlacement>> placements;
  for (const auto& t : lora_->tensors()) {
    parameters_.push_back(t.tensor);
    placements.emplace_back(t.name, t.placement);
    trained_groups_.push_back(group_of.at(t.base_parameter));
    std::int64_t numel = 1;
    for (auto d : t.placement.shape) numel *= d;
    count += numel;
  }
  log.info("LoRA r " + std::to_string(settings.r) + " on " + std::to_string(lora_->tensors().size()) +
           " tensors: " + std::to_string(count) + " trained parameters; the base is frozen");
  return placements;
}

void ParallelModel::append_frozen_base(std::vector<torch::Tensor>& parameters, std::vector<std::int64_t>& rows,
                                       std::vector<int>& groups, std::vector<bool>& frozen) const {
  // After the trained tensors, whose indices stay theirs: gathered for forward and backward by
  // their groups, never reduced or stepped.
  frozen.assign(parameters.size(), false);
  const auto model_groups = model_->parameter_groups();
  std::size_t i = 0;
  for (const auto& [name, placement] : model_->placements()) {
    const auto& parameter = model_->named_parameters()[name];
    const int group = model_groups.at(i++);
    if (parameter.requires_grad()) continue;  // a modules_to_save tensor: trained, listed already
    parameters.push_back(parameter);
    rows.push_back(placement.rows());
    groups.push_back(group);
    frozen.push_back(true);
  }
}

std::string ParallelModel::weights_in(const std::string& dir) const {
  return lora_ ? dir + "/" + models::kAdapterWeightsFile : dir;
}

nlohmann::json ParallelModel::adapter_config() const {
  if (!lora_) return nullptr;
  auto settings = lora_->settings();
  settings.base_model_name_or_path = source_dir_;
  return settings.to_adapter_config();
}

std::vector<checkpoint::LocalTensor> ParallelModel::merged_model_tensors(std::optional<at::ScalarType> dtype) {
  if (!lora_) throw std::logic_error("merged_model_tensors: no LoRA adapters");
  lora_->merge_into_base();  // each rank folds its own slices: no whole weight is formed
  std::vector<checkpoint::LocalTensor> out;
  for (const auto& [name, placement] : model_->placements())
    out.push_back(local_tensor(name, model_->named_parameters()[name].detach(), placement, dtype, false));
  return out;
}

}  // namespace mpitrain::train
