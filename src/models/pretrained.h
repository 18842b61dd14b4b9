// from_pretrained / save_pretrained: an HF model directory to a model and back, with strict checks.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "runtime/checkpoint/hf_weights.h"

namespace mpitrain::checkpoint {
class CheckpointReader;
}
#include "src/models/model.h"

namespace mpitrain::models {

// "float32" | "bfloat16" | "float16" (and "fp32", "bf16", "fp16"); throws std::invalid_argument.
at::ScalarType parse_torch_dtype(const std::string& name);
std::string torch_dtype_name(at::ScalarType type);

struct LoadedModel {
  std::shared_ptr<HfModel> model;
  nlohmann::json generation_config;        // null when the directory has none
  std::vector<std::string> ignored_tensors;  // in the checkpoint but not used (HF warns about these too)
  // A new task head the source lacked (a base checkpoint fine-tuned for a task), initialised
  // as transformers initialises it; empty when every tensor came from the checkpoint.
  std::vector<std::string> initialised_tensors;
};

// Reads config.json and the weights (single or sharded; F32/BF16/F16 on disk) into a model
// computing in `dtype`. Every model tensor must be present with the shape the config implies,
// with one exception: a checkpoint whose config.json names another architecture (a base
// BertModel, BertForMaskedLM) may lack the whole task head of this one, which is then
// initialised as transformers initialises it (from the default generator: seed it alike on
// every rank) and listed in `initialised_tensors`. `config_overrides` are merged over
// config.json first (num_labels, id2label, label2id: as from_pretrained's keyword arguments).
// Under a tensor-parallel group each rank reads only its own slices. With `load_now` false the
// weights are checked but not read, and the parameters are left uninitialised: a sharded
// runtime reads each rank's shards itself (load_weight_blocks).
LoadedModel from_pretrained(const std::string& dir, at::ScalarType dtype = torch::kFloat32, TensorParallelPtr tp = nullptr,
                            bool load_now = true, const nlohmann::json& config_overrides = nlohmann::json::object());

// Problems between a model (its config) and a set of weights: missing tensors, shapes that
// don't fit, non-float dtypes. `unused` receives the names the model does not take.
std::vector<std::string> check_weights(const HfModel& model, const checkpoint::HfWeights& weights,
                                       std::vector<std::string>* unused = nullptr,
                                       const std::vector<std::string>& may_be_missing = {});

// Copies the weights into the model; throws CheckpointError on the first check_weights problem.
void load_weights(HfModel& model, const checkpoint::HfWeights& weights);
// Reads block `placements[i]` of each parameter's HF tensor into `targets[i]` (parameters in
// named_parameters() order; empty targets, and parameters the weights lack (a new task head,
// initialised already), are skipped), without check_weights: for weights
// checked when the model was built (from_pretrained with load_now false).
void load_weight_blocks(const HfModel& model, const checkpoint::HfWeights& weights,
                        const std::vector<ParameterPlacement>& placements, const std::vector<torch::Tensor>& targets);
// One parameter's block of load_weight_blocks (its HF name found as from_pretrained finds it);
// undefined where the weights lack it (a new task head).
torch::Tensor read_weight_block(const HfModel& model, const checkpoint::HfWeights& weights,
                                const std::string& parameter, const ParameterPlacement& placement);

struct SaveOptions {
  std::uint64_t max_shard_size = 5'000'000'000;  // transformers' default "5GB"
  std::optional<at::ScalarType> dtype;           // default: the model's parameter dtype
};

// config.json (with `saved_dtype`) and generation_config.json (causal LMs): everything of
// save_pretrained but the weights, for savers that write the weights themselves.
void save_pretrained_metadata(const HfModel& model, const std::string& dir, at::ScalarType saved_dtype,
                              const nlohmann::json& generation_config = nullptr);

// Throws CheckpointError naming the directory and a tensor the checkpoint holds that the model
// has no parameter for (nor recomputes or ties): a checkpoint of a larger model would
// otherwise load with its extra layers silently dropped.
void require_no_foreign_tensors(const HfModel& model, const class checkpoint::CheckpointReader& reader);
// Loads every parameter from a reader of any saved layout (HF directory or sharded save), all
// of the checkpoint's tensors (require_no_foreign_tensors).
void load_weights(HfModel& model, const class checkpoint::CheckpointReader& reader);
// The block of tensor `name` that `placement` describes, shaped `local_shape`; throws
// CheckpointError naming the directory and the tensor when it is absent or of another shape.
torch::Tensor read_placed(const class checkpoint::CheckpointReader& reader, const std::string& name,
                          const ParameterPlacement& placement, at::IntArrayRef local_shape);

// Writes config.json, generation_config.json (causal LMs) and the weights, as save_pretrained does.
void save_pretrained(const HfModel& model, const std::string& dir, const SaveOptions& options,
                     const nlohmann::json& generation_config = nullptr);

// The checkpoint name under which a model parameter is found in `weights` (GPT-2 checkpoints
// of the bare model omit "transformer."); empty when absent.
std::string find_checkpoint_name(const HfModel& model, const checkpoint::HfWeights& weights,
                                 const std::string& parameter_name);

}  // namespace mpitrain::models
