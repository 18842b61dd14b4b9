// LoRA adapters on a model's linear layers, as PEFT makes them: y = W x + scale * B(A(dropout(x))), with PEFT's tensor names, under tensor parallelism each rank holding its part.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "runtime/checkpoint/safetensors_file.h"
#include "src/models/lora_settings.h"
#include "src/models/model.h"

namespace mpitrain::models {

// One trained tensor of an adapter: PEFT's name for it in adapter_model.safetensors, this tp
// rank's part of it, and where that part sits in the whole tensor.
struct AdapterTensor {
  std::string name;
  torch::Tensor tensor;
  ParameterPlacement placement;
  // The model parameter it belongs to: the adapted layer's weight for a LoRA factor (its
  // forward group is the factor's), the parameter itself for a modules_to_save tensor.
  std::string base_parameter;
  bool factor = false;  // lora_A or lora_B (else a modules_to_save tensor)
};

// The adapters of one model. Under tp a column-parallel layer's A is whole on every rank and
// its B split along the output like the weight; a row-parallel layer's A is split along the
// input and its B whole, the update joining the weight's partial sum before the layer's one
// all-reduce: no rank ever forms a whole weight or update. The whole factors' gradients are
// partial on each rank (placement.partial_gradient: the tp group sums them).
class LoraAdapters {
 public:
  // Attaches an adapter to every linear layer of `model` that `settings` targets, with A and B
  // uninitialised (initialise() or load()). Throws CheckpointError naming `source` and a
  // target_modules entry that matches no layer (or matches a layer that is not linear), or a
  // modules_to_save entry that names no module.
  LoraAdapters(HfModel& model, LoraSettings settings, const std::string& source);
  ~LoraAdapters();
  LoraAdapters(const LoraAdapters&) = delete;
  LoraAdapters& operator=(const LoraAdapters&) = delete;

  const LoraSettings& settings() const { return settings_; }
  // PEFT's init for new adapters: A Kaiming-uniform (a = sqrt(5)), B zero (init_lora_weights
  // false: B Kaiming-uniform too), each drawn whole from the default generator and sliced, so
  // every tp size starts from what one rank would.
  void initialise();
  // The adapter's tensors from `file` (an adapter_model.safetensors): every one present with
  // the shape this base gives it, nothing else; a modules_to_save copy replaces the module's
  // weights. Throws CheckpointError naming the file and the tensor (a wrong shape: an adapter
  // of another base).
  void load(const checkpoint::SafetensorsFile& file);
  // What training steps and a save writes, in the model's module order: each adapted layer's
  // lora_A then lora_B, and the modules_to_save parameters (the model's own tensors).
  const std::vector<AdapterTensor>& tensors() const { return tensors_; }
  // Folds every update into its base weight (W += scale * B A, in the weight's dtype, each
  // rank its own slice) and detaches the adapters: the model is then the merged model.
  void merge_into_base();

 private:
  struct Adapted;
  void attach(const std::string& module_name, torch::nn::Module& layer);
  HfModel& model_;
  LoraSettings settings_;
  std::string source_;
  std::vector<std::shared_ptr<Adapted>> adapted_;
  std::vector<AdapterTensor> tensors_;
};

// The adapter directory `dir` (adapter_config.json and adapter_model.safetensors, as PEFT's
// save_pretrained writes it) attached to `model`; errors name the file, key or tensor.
std::unique_ptr<LoraAdapters> load_adapter(HfModel& model, const std::string& dir);

// Names the PEFT prefix every adapter tensor carries ("base_model.model.").
std::string peft_tensor_name(const std::string& model_tensor_name);

// An adapter directory from one process (tp 1): adapter_config.json (with
// `base_model_name_or_path`) and adapter_model.safetensors with PEFT's names.
void save_adapter(const LoraAdapters& adapters, const std::string& dir, const std::string& base_model_name_or_path);

}  // namespace mpitrain::models
