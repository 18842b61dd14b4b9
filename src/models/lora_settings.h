// PEFT's LoraConfig: the settings of a LoRA adapter under PEFT's names and defaults, read from and written as adapter_config.json.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace mpitrain::models {

// The two files of a PEFT adapter directory.
inline constexpr const char* kAdapterConfigFile = "adapter_config.json";
inline constexpr const char* kAdapterWeightsFile = "adapter_model.safetensors";

struct LoraSettings {
  std::int64_t r = 8;
  double lora_alpha = 8;
  double lora_dropout = 0;
  // Module names as PEFT matches them: a module whose name is an entry or ends in "." + entry.
  std::vector<std::string> target_modules;
  std::string target_regex;  // target_modules given as one string: a full match of the module name
  bool all_linear = false;   // "all-linear": every linear layer but the output head
  std::vector<std::string> exclude_modules;
  std::vector<std::string> modules_to_save;  // trained whole and saved beside the adapter
  bool use_rslora = false;                   // scale alpha / sqrt(r) instead of alpha / r
  bool init_lora_weights = true;             // new adapters: A Kaiming-uniform, B zero (false: B random too)
  std::string task_type;                     // CAUSAL_LM, SEQ_CLS
  std::string base_model_name_or_path;

  double scale() const;
  // Checks the values and refuses what this implementation does not do (DoRA, LoRA biases,
  // rank or alpha patterns, layers_to_transform, another peft_type), one line naming `source`
  // and the key. Throws CheckpointError.
  void validate(const std::string& source) const;
  // An adapter_config.json as PEFT writes it (every key PEFT 0.14 writes, target_modules sorted).
  nlohmann::json to_adapter_config() const;
};

// The settings an adapter_config.json holds (PEFT's keys and defaults). A key this
// implementation does not act on is accepted at its neutral value (null, false, empty: what
// newer PEFT versions add) and otherwise refused by name; wrong types are errors naming
// `source` and the key. The result is validated.
LoraSettings lora_settings_from_json(const nlohmann::json& config, const std::string& source);

// `dir`/adapter_config.json.
LoraSettings read_adapter_config(const std::string& dir);

}  // namespace mpitrain::models
