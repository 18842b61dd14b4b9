// from_pretrained / save_pretrained: an HF model directory to a model and back, with strict checks.
#include "src/models/pretrained.h"

#include <algorithm>
#include <filesystem>
#include <set>

#include "runtime/checkpoint/atomic_file.h"
#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/checkpoint_reader.h"
#include "runtime/checkpoint/json_file.h"
#include "runtime/checkpoint/torch_bin.h"
#include "runtime/checkpoint/torch_tensors.h"
#include "src/models/registry.h"

namespace mpitrain::models {

namespace fs = std::filesystem;
using checkpoint::CheckpointError;

at::ScalarType parse_torch_dtype(const std::string& name) {
  if (name == "float32" || name == "fp32") return torch::kFloat32;
  if (name == "bfloat16" || name == "bf16") return torch::kBFloat16;
  if (name == "float16" || name == "fp16") return torch::kFloat16;
  throw std::invalid_argument("dtype '" + name + "' is not one of float32, bfloat16, float16");
}

std::string torch_dtype_name(at::ScalarType type) {
  switch (type) {
    case torch::kFloat32: return "float32";
    case torch::kBFloat16: return "bfloat16";
    case torch::kFloat16: return "float16";
    default: throw std::invalid_argument(std::string("no HF dtype name for ") + c10::toString(type));
  }
}

std::string find_checkpoint_name(const HfModel& model, const checkpoint::HfWeights& weights,
                                 const std::string& parameter_name) {
  if (weights.contains(parameter_name)) return parameter_name;
  const auto prefix = model.base_model_prefix();
  if (!prefix.empty() && parameter_name.rfind(prefix, 0) == 0) {
    const auto bare = parameter_name.substr(prefix.size());
    if (weights.contains(bare)) return bare;
  }
  return "";
}

namespace {

std::string shape_text(at::IntArrayRef shape) { return checkpoint::shape_to_string(shape.vec()); }

bool is_float(checkpoint::DType dtype) {
  return dtype == checkpoint::DType::F32 || dtype == checkpoint::DType::F16 || dtype == checkpoint::DType::BF16 ||
         dtype == checkpoint::DType::F64;
}

}  // namespace

std::vector<std::string> check_weights(const HfModel& model, const checkpoint::HfWeights& weights,
                                       std::vector<std::string>* unused, const std::vector<std::string>& may_be_missing) {
  std::vector<std::string> problems;
  std::set<std::string> used;
  std::vector<std::string> missing;
  for (const auto& [parameter, placement] : model.placements()) {
    const auto name = find_checkpoint_name(model, weights, parameter);
    if (name.empty()) {
      if (std::find(may_be_missing.begin(), may_be_missing.end(), parameter) == may_be_missing.end())
        missing.push_back(parameter);
      continue;
    }
    used.insert(name);
    const auto& entry = weights.entry(name);
    const std::string where = weights.file_of(name).path() + ": tensor '" + name + "'";
    if (!is_float(entry.dtype))
      problems.push_back(where + " has dtype " + std::string(checkpoint::dtype_name(entry.dtype)) +
                         ", not a floating-point type");
    if (entry.shape != placement.shape)
      problems.push_back(where + " has shape " + shape_text(entry.shape) + " but config.json implies " +
                         shape_text(placement.shape));
  }
  if (!missing.empty()) {
    std::string list;
    for (std::size_t i = 0; i < missing.size() && i < 5; ++i) list += (i ? ", " : "") + missing[i];
    if (missing.size() > 5) list += ", ...";
    problems.push_back(weights.source() + ": " + std::to_string(missing.size()) +
                       " tensor(s) the model needs are missing (" + list + ")");
  }
  if (unused) {
    for (const auto& name : weights.names())
      if (!used.count(name) && !model.is_ignorable_checkpoint_tensor(name)) unused->push_back(name);
  }
  return problems;
}

namespace {

// Every parameter's own block, for weights already checked.
void load_every_parameter(HfModel& model, const checkpoint::HfWeights& weights) {
  std::vector<ParameterPlacement> placements;
  for (auto& [name, placement] : model.placements()) placements.push_back(std::move(placement));
  load_weight_blocks(model, weights, placements, model.parameters());
}

}  // namespace

void load_weights(HfModel& model, const checkpoint::HfWeights& weights) {
  const auto problems = check_weights(model, weights);
  if (!problems.empty()) throw CheckpointError(problems.front());
  load_every_parameter(model, weights);
}

torch::Tensor read_weight_block(const HfModel& model, const checkpoint::HfWeights& weights,
                                const std::string& parameter, const ParameterPlacement& placement) {
  const auto name = find_checkpoint_name(model, weights, parameter);
  if (name.empty()) return {};  // a new task head, initialised when the model was built
  const auto& file = weights.file_of(name);
  // Only this rank's block is read; a fused tensor is read through its [parts, length] view.
  auto entry = file.entry(name);
  entry.shape = placement.view;
  return checkpoint::read_tensor_slice(file, entry, placement.block.offsets, placement.block.sizes);
}

void load_weight_blocks(const HfModel& model, const checkpoint::HfWeights& weights,
                        const std::vector<ParameterPlacement>& placements, const std::vector<torch::Tensor>& targets) {
  torch::NoGradGuard no_grad;
  std::size_t i = 0;
  for (const auto& item : model.named_parameters()) {
    const auto& placement = placements[i];
    auto target = targets[i++].detach();
    if (target.numel() == 0) continue;
    const auto block = read_weight_block(model, weights, item.key(), placement);
    if (block.defined()) target.copy_(block.view(target.sizes()));  // copy_ converts the dtype
  }
}

namespace {

// The head this model has that `weights` lack entirely, when the checkpoint is of another
// architecture (its config.json says so): what a fine-tuning run initialises. Empty otherwise,
// so a checkpoint of this very architecture missing its head stays an error.
std::vector<std::string> new_task_head(const HfModel& model, const checkpoint::HfWeights& weights,
                                       const nlohmann::json& source_config) {
  const auto head = model.task_head_parameters();
  if (head.empty()) return {};
  const auto architectures = source_config.value("architectures", nlohmann::json::array());
  for (const auto& a : architectures)
    if (a.is_string() && a.get<std::string>() == model.architecture()) return {};
  for (const auto& name : head)
    if (!find_checkpoint_name(model, weights, name).empty()) return {};  // part of a head: not a new one
  return head;
}

}  // namespace

LoadedModel from_pretrained(const std::string& dir, at::ScalarType dtype, TensorParallelPtr tp, bool load_now,
                            const nlohmann::json& config_overrides) {
  const auto config_path = (fs::path(dir) / "config.json").string();
  if (!fs::is_directory(dir)) throw CheckpointError(dir, "is not a model directory");
  const auto source_config = checkpoint::read_json_file(config_path);
  auto config = source_config;
  if (config.is_object() && config_overrides.is_object()) config.update(config_overrides);
  LoadedModel loaded;
  {
    SkipInitialisation every_weight_is_loaded_below;
    loaded.model = create_model(config, config_path, std::move(tp));
  }
  loaded.model->to(dtype);
  const auto weights = checkpoint::open_model_weights(dir);
  loaded.initialised_tensors = new_task_head(*loaded.model, weights, source_config);
  const auto problems = check_weights(*loaded.model, weights, &loaded.ignored_tensors, loaded.initialised_tensors);
  if (!problems.empty()) throw CheckpointError(problems.front());
  if (!loaded.initialised_tensors.empty()) loaded.model->initialise_task_head();
  if (load_now) load_every_parameter(*loaded.model, weights);
  const auto generation_path = fs::path(dir) / "generation_config.json";
  if (fs::exists(generation_path)) loaded.generation_config = checkpoint::read_json_file(generation_path.string());
  return loaded;
}

void save_pretrained(const HfModel& model, const std::string& dir, const SaveOptions& options,
                     const nlohmann::json& generation_config) {
  fs::create_directories(dir);
  std::vector<torch::Tensor> keep_alive;
  std::vector<checkpoint::TensorBytes> tensors;
  at::ScalarType saved_type = torch::kFloat32;
  for (const auto& item : model.named_parameters()) {
    auto t = item.value().detach();
    if (options.dtype) t = t.to(*options.dtype);
    t = t.to(torch::kCPU).contiguous();
    saved_type = t.scalar_type();
    keep_alive.push_back(t);
    tensors.push_back(checkpoint::tensor_bytes(item.key(), keep_alive.back()));
  }
  checkpoint::save_hf_weights(dir, tensors, options.max_shard_size);
  save_pretrained_metadata(model, dir, saved_type, generation_config);
}

void save_pretrained_metadata(const HfModel& model, const std::string& dir, at::ScalarType saved_type,
                              const nlohmann::json& generation_config) {
  fs::create_directories(dir);
  nlohmann::json config = model.config();
  config["architectures"] = {model.architecture()};
  config["tie_word_embeddings"] = model.ties_word_embeddings();
  config["torch_dtype"] = torch_dtype_name(saved_type);
  config["dtype"] = torch_dtype_name(saved_type);  // the key transformers 5.x reads
  checkpoint::write_json_file((fs::path(dir) / "config.json").string(), config);

  if (model.is_causal_lm()) {
    nlohmann::json generation = generation_config;
    if (generation.is_null()) {
      generation = nlohmann::json::object();
      generation["_from_model_config"] = true;
      for (const char* key : {"bos_token_id", "eos_token_id", "pad_token_id"})
        if (config.contains(key) && !config[key].is_null()) generation[key] = config[key];
    }
    checkpoint::write_json_file((fs::path(dir) / "generation_config.json").string(), generation);
  }
}

torch::Tensor read_placed(const checkpoint::CheckpointReader& reader, const std::string& name,
                          const ParameterPlacement& placement, at::IntArrayRef local_shape) {
  // A checkpoint of another model fails here, on its first differing tensor, by name.
  if (!reader.contains(name))
    throw CheckpointError(reader.dir(), "has no tensor '" + name + "' (a checkpoint of another model?)");
  if (reader.shape(name) != placement.shape)
    throw CheckpointError(reader.dir(), "tensor '" + name + "' has shape " + shape_text(reader.shape(name)) +
                                            " but the model needs " + shape_text(placement.shape) +
                                            " (a checkpoint of another model?)");
  return reader.read(name, placement.block, placement.view).view(local_shape);
}

void require_no_foreign_tensors(const HfModel& model, const checkpoint::CheckpointReader& reader) {
  std::set<std::string> parameters;
  for (const auto& item : model.named_parameters()) parameters.insert(item.key());
  std::vector<std::string> foreign;
  for (const auto& name : reader.names())
    if (!parameters.count(name) && !model.is_ignorable_checkpoint_tensor(name)) foreign.push_back(name);
  if (foreign.empty()) return;
  throw CheckpointError(reader.dir(), "holds tensor '" + foreign.front() + "', which this model does not have" +
                                          (foreign.size() > 1 ? " (and " + std::to_string(foreign.size() - 1) + " more)" : "") +
                                          ": a checkpoint of another model? (resuming would drop it)");
}

void load_weights(HfModel& model, const checkpoint::CheckpointReader& reader) {
  require_no_foreign_tensors(model, reader);
  torch::NoGradGuard no_grad;
  const auto placements = model.placements();
  std::size_t i = 0;
  for (auto& item : model.named_parameters()) {
    const auto& placement = placements[i++].second;
    item.value().copy_(read_placed(reader, item.key(), placement, item.value().sizes()));
  }
}

}  // namespace mpitrain::models
