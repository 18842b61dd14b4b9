// LoRA adapters on a model's linear layers, as PEFT makes them: y = W x + scale * B(A(dropout(x))), with PEFT's tensor names, under tensor parallelism each rank holding its part.
#include "src/models/lora.h"

#include <cmath>
#include <filesystem>
#include <map>
#include <regex>
#include <set>

#include "runtime/checkpoint/atomic_file.h"
#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/safetensors_writer.h"
#include "runtime/checkpoint/torch_tensors.h"

namespace mpitrain::models {

using checkpoint::CheckpointError;

namespace {

bool names_module(const std::string& key, const std::string& entry) {
  return key == entry || (key.size() > entry.size() && key.compare(key.size() - entry.size(), entry.size(), entry) == 0 &&
                          key[key.size() - entry.size() - 1] == '.');
}

std::string base_name(const std::string& key) { return key.substr(key.rfind('.') + 1); }

bool is_linear(const torch::nn::Module& m) {
  return dynamic_cast<const Linear*>(&m) != nullptr || dynamic_cast<const Conv1D*>(&m) != nullptr;
}

// PEFT's "all-linear": the base names of every linear layer, less the output layer's (a causal
// LM's lm_head; a classifier's top-level classifier or score head).
std::set<std::string> all_linear_names(HfModel& model) {
  std::set<std::string> names;
  std::set<std::string> top;
  for (const auto& item : model.named_modules("", false)) {
    if (is_linear(*item.value())) names.insert(base_name(item.key()));
    top.insert(item.key());
  }
  if (model.is_causal_lm()) {
    names.erase("lm_head");
  } else {
    for (const char* head : {"classifier", "score"})
      if (top.count(head)) {
        names.erase(head);
        break;
      }
  }
  return names;
}

void kaiming_uniform(torch::Tensor& t) {
  torch::NoGradGuard no_grad;
  torch::nn::init::kaiming_uniform_(t, std::sqrt(5.0));
}

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

}  // namespace

std::string peft_tensor_name(const std::string& model_tensor_name) { return "base_model.model." + model_tensor_name; }

// One adapted layer: its factors (this rank's parts), how each is cut from the whole, and the
// base weight the merge folds them into.
struct LoraAdapters::Adapted : OutputDelta {
  torch::Tensor weight;  // the base layer's (shares its storage)
  bool transposed = false;  // Conv1D: weight [in, out] (PEFT's fan_in_fan_out)
  torch::Tensor a, b;
  std::vector<std::int64_t> a_full, b_full;
  Shard a_shard, b_shard;
  double scale = 1, dropout = 0;
  ShardedLayer* layer = nullptr;

  torch::Tensor forward(const torch::Tensor& x, bool training) const override {
    const auto h = dropout > 0 && training ? torch::dropout(x, dropout, true) : x;
    return torch::linear(torch::linear(h, a), b) * scale;
  }
};

LoraAdapters::LoraAdapters(HfModel& model, LoraSettings settings, const std::string& source)
    : model_(model), settings_(std::move(settings)), source_(source) {
  settings_.validate(source_);
  const auto linear_names = settings_.all_linear ? all_linear_names(model_) : std::set<std::string>();
  std::regex pattern;
  if (!settings_.target_regex.empty()) pattern = std::regex(settings_.target_regex);
  std::map<std::string, int> target_hits, save_hits;
  for (const auto& t : settings_.target_modules) target_hits[t] = 0;
  for (const auto& m : settings_.modules_to_save) save_hits[m] = 0;
  std::map<std::string, ParameterPlacement> placements;
  for (auto& [name, placement] : model_.placements()) placements[name] = placement;
  std::string saved_prefix;  // inside a modules_to_save module: its parameters are taken whole
  for (const auto& item : model_.named_modules("", false)) {
    const auto& key = item.key();
    if (!saved_prefix.empty() && key.rfind(saved_prefix, 0) == 0) continue;
    saved_prefix.clear();
    bool to_save = false;
    for (auto& [entry, hits] : save_hits)
      if (names_module(key, entry)) to_save = true, ++hits;
    if (to_save) {
      for (const auto& p : item.value()->named_parameters())
        tensors_.push_back({peft_tensor_name(key + "." + p.key()), p.value(), placements.at(key + "." + p.key()),
                            key + "." + p.key(), false});
      saved_prefix = key + ".";
      continue;
    }
    bool excluded = false;
    for (const auto& e : settings_.exclude_modules) excluded = excluded || names_module(key, e);
    if (excluded) continue;
    bool targeted = false;
    if (settings_.all_linear) targeted = linear_names.count(base_name(key)) > 0 && is_linear(*item.value());
    if (!settings_.target_regex.empty() && std::regex_match(key, pattern)) targeted = true, ++target_hits[settings_.target_regex];
    for (auto& [entry, hits] : target_hits)
      if (entry != settings_.target_regex && names_module(key, entry)) targeted = true, ++hits;
    if (!targeted) continue;
    if (!is_linear(*item.value()))
      throw CheckpointError(source_, "target_modules matches " + key + ", which is not a linear layer (LoRA here adapts "
                                     "linear and Conv1D layers)");
    attach(key, *item.value());
  }
  for (const auto& [entry, hits] : target_hits)
    if (hits == 0) throw CheckpointError(source_, "target_modules entry '" + entry + "' matches no module of " + model_.architecture());
  for (const auto& [entry, hits] : save_hits)
    // PEFT adds both usual head names to a classifier's modules_to_save, whichever it has.
    if (hits == 0 && !(settings_.task_type == "SEQ_CLS" && (entry == "classifier" || entry == "score")))
      throw CheckpointError(source_, "modules_to_save entry '" + entry + "' is not a module of " + model_.architecture());
  if (adapted_.empty()) throw CheckpointError(source_, "target_modules matches no linear layer of " + model_.architecture());
}

LoraAdapters::~LoraAdapters() {
  for (const auto& a : adapted_) a->layer->set_output_delta(nullptr);
}

void LoraAdapters::attach(const std::string& module_name, torch::nn::Module& layer) {
  auto adapted = std::make_shared<Adapted>();
  auto* linear = dynamic_cast<Linear*>(&layer);
  auto* conv = dynamic_cast<Conv1D*>(&layer);
  adapted->layer = linear ? static_cast<ShardedLayer*>(linear) : static_cast<ShardedLayer*>(conv);
  adapted->weight = linear ? linear->weight : conv->weight;
  adapted->transposed = conv != nullptr;
  adapted->scale = settings_.scale();
  adapted->dropout = settings_.lora_dropout;
  const auto& shards = adapted->layer->shards();
  const auto found = shards.find("weight");
  const Shard weight_shard = found == shards.end() ? Shard{} : found->second;
  const bool row_parallel = linear ? linear->row_parallel() : conv->row_parallel();
  // The whole tensor's in and out features (the weight's shard undone).
  auto full = adapted->weight.sizes().vec();
  if (weight_shard.dim >= 0) full[static_cast<std::size_t>(weight_shard.dim)] *= weight_shard.count;
  const auto in = adapted->transposed ? full[0] : full[1], out = adapted->transposed ? full[1] : full[0];
  adapted->a_full = {settings_.r, in};
  adapted->b_full = {out, settings_.r};
  const int output_dim = adapted->transposed ? 1 : 0;
  if (weight_shard.dim >= 0 && weight_shard.dim == output_dim) {  // column-parallel: B split like the rows
    adapted->b_shard = {0, weight_shard.parts, weight_shard.index, weight_shard.count, weight_shard.partial_gradient};
    adapted->a_shard.partial_gradient = true;
  } else if (weight_shard.dim >= 0 && row_parallel) {  // row-parallel: A split like the input columns
    adapted->a_shard = {1, 1, weight_shard.index, weight_shard.count, false};
    adapted->b_shard.partial_gradient = true;
  }
  const auto local = [](std::vector<std::int64_t> shape, const Shard& s) {
    if (s.dim >= 0) shape[static_cast<std::size_t>(s.dim)] /= s.count;
    return shape;
  };
  const auto options = adapted->weight.options().requires_grad(false);
  adapted->a = torch::empty(local(adapted->a_full, adapted->a_shard), options).requires_grad_(true);
  adapted->b = torch::empty(local(adapted->b_full, adapted->b_shard), options).requires_grad_(true);
  const int tp = model_.tensor_parallel().size();
  const auto weight = module_name + ".weight";
  tensors_.push_back({peft_tensor_name(module_name + ".lora_A.weight"), adapted->a,
                      place(adapted->a.sizes().vec(), adapted->a_shard, tp), weight, true});
  tensors_.push_back({peft_tensor_name(module_name + ".lora_B.weight"), adapted->b,
                      place(adapted->b.sizes().vec(), adapted->b_shard, tp), weight, true});
  adapted->layer->set_output_delta(adapted);
  adapted_.push_back(std::move(adapted));
}

void LoraAdapters::initialise() {
  torch::NoGradGuard no_grad;
  for (const auto& a : adapted_) {
    auto whole_a = torch::empty(a->a_full, a->a.options().requires_grad(false));
    kaiming_uniform(whole_a);
    a->a.copy_(slice_for_shard(whole_a, a->a_shard));
    auto whole_b = torch::zeros(a->b_full, a->b.options().requires_grad(false));
    if (!settings_.init_lora_weights) kaiming_uniform(whole_b);
    a->b.copy_(slice_for_shard(whole_b, a->b_shard));
  }
}

void LoraAdapters::load(const checkpoint::SafetensorsFile& file) {
  torch::NoGradGuard no_grad;
  std::set<std::string> expected;
  for (const auto& t : tensors_) {
    expected.insert(t.name);
    const auto* entry = file.header().find(t.name);
    if (!entry)
      throw CheckpointError(file.path(), "tensor " + t.name + " is missing (an adapter of other target_modules or "
                                         "modules_to_save than adapter_config.json says)");
    const auto& shape = t.placement.shape;
    if (entry->shape != shape)
      throw CheckpointError(file.path(), "tensor " + t.name + " is " + shape_text(entry->shape) + " but this base's " +
                                         "layer takes " + shape_text(shape) + ": an adapter of another base model");
    auto viewed = *entry;  // a fused layer's B is read through its [parts, length] view
    viewed.shape = t.placement.view;
    const auto& block = t.placement.block;
    auto target = t.tensor.detach();
    target.copy_(checkpoint::read_tensor_slice(file, viewed, block.offsets, block.sizes).view(target.sizes()));
  }
  for (const auto& entry : file.header().tensors)
    if (!expected.count(entry.name))
      throw CheckpointError(file.path(), "tensor " + entry.name + " belongs to no adapted module of this " +
                                         model_.architecture() + " (an adapter of another base model)");
}

void LoraAdapters::merge_into_base() {
  torch::NoGradGuard no_grad;
  for (const auto& a : adapted_) {
    auto delta = torch::matmul(a->b, a->a) * a->scale;  // [out, in] of this rank's part
    if (a->transposed) delta = delta.t();
    a->weight.detach().add_(delta.to(a->weight.scalar_type()));
    a->layer->set_output_delta(nullptr);
  }
  std::vector<AdapterTensor> kept;
  for (auto& t : tensors_)
    if (!t.factor) kept.push_back(t);
  tensors_ = std::move(kept);
  adapted_.clear();
}

std::unique_ptr<LoraAdapters> load_adapter(HfModel& model, const std::string& dir) {
  auto adapters = std::make_unique<LoraAdapters>(model, read_adapter_config(dir), dir + "/" + kAdapterConfigFile);
  adapters->load(checkpoint::SafetensorsFile(dir + "/" + kAdapterWeightsFile));
  return adapters;
}

void save_adapter(const LoraAdapters& adapters, const std::string& dir, const std::string& base_model_name_or_path) {
  std::filesystem::create_directories(dir);
  std::vector<torch::Tensor> held;
  std::vector<checkpoint::TensorBytes> bytes;
  for (const auto& t : adapters.tensors()) {
    if (t.placement.block.sizes != t.placement.view)
      throw std::logic_error("save_adapter: " + t.name + " is a tp slice; a tp run saves through the save coordinator");
    held.push_back(t.tensor.detach().to(torch::kCPU).contiguous());
    bytes.push_back(checkpoint::tensor_bytes(t.name, held.back()));
  }
  checkpoint::write_safetensors(dir + "/" + kAdapterWeightsFile, bytes);
  auto settings = adapters.settings();
  settings.base_model_name_or_path = base_model_name_or_path;
  checkpoint::write_file_atomically(dir + "/" + kAdapterConfigFile, settings.to_adapter_config().dump(2) + "\n");
}

}  // namespace mpitrain::models
