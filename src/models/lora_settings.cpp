// PEFT's LoraConfig: the settings of a LoRA adapter under PEFT's names and defaults, read from and written as adapter_config.json.
#include "src/models/lora_settings.h"

#include <algorithm>
#include <cmath>
#include <regex>
#include <set>

#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/json_file.h"

namespace mpitrain::models {

using checkpoint::CheckpointError;
using nlohmann::json;

namespace {

// Keys PEFT writes that change nothing at their neutral value (and that this implementation
// refuses otherwise), or that only describe (inference_mode, revision, auto_mapping).
const std::set<std::string> kDescriptive = {"inference_mode", "revision", "auto_mapping", "megatron_core",
                                            "megatron_config", "fan_in_fan_out", "peft_type", "layers_pattern"};

bool neutral(const json& value) {
  return value.is_null() || (value.is_boolean() && !value.get<bool>()) ||
         ((value.is_object() || value.is_array() || value.is_string()) && value.empty());
}

std::vector<std::string> string_list(const json& value, const std::string& source, const std::string& key) {
  std::vector<std::string> out;
  if (value.is_null()) return out;
  if (!value.is_array()) throw CheckpointError(source, key + " must be a list of module names");
  for (const auto& item : value) {
    if (!item.is_string() || item.get<std::string>().empty())
      throw CheckpointError(source, key + " entries must be module names, not " + item.dump());
    out.push_back(item.get<std::string>());
  }
  return out;
}

template <class T>
T typed(const json& config, const std::string& key, T fallback, const std::string& source) {
  if (!config.contains(key) || config[key].is_null()) return fallback;
  try {
    return config[key].get<T>();
  } catch (const json::exception&) {
    throw CheckpointError(source, key + " " + config[key].dump() + " has the wrong type");
  }
}

}  // namespace

double LoraSettings::scale() const {
  return use_rslora ? lora_alpha / std::sqrt(static_cast<double>(r)) : lora_alpha / static_cast<double>(r);
}

void LoraSettings::validate(const std::string& source) const {
  if (r <= 0) throw CheckpointError(source, "r " + std::to_string(r) + " must be a positive rank");
  if (!(lora_dropout >= 0 && lora_dropout < 1))
    throw CheckpointError(source, "lora_dropout " + std::to_string(lora_dropout) + " must be in [0, 1)");
  if (!std::isfinite(lora_alpha)) throw CheckpointError(source, "lora_alpha must be a finite number");
  if (target_modules.empty() && target_regex.empty() && !all_linear)
    throw CheckpointError(source, "target_modules is empty: name the modules to adapt (q_proj, v_proj, ... or all-linear)");
  if (!target_regex.empty()) {
    try {
      std::regex check(target_regex);
    } catch (const std::regex_error&) {
      throw CheckpointError(source, "target_modules '" + target_regex + "' is not a regular expression");
    }
  }
  if (!task_type.empty() && task_type != "CAUSAL_LM" && task_type != "SEQ_CLS")
    throw CheckpointError(source, "task_type " + task_type + " is not CAUSAL_LM or SEQ_CLS");
}

json LoraSettings::to_adapter_config() const {
  json targets;
  if (all_linear) {
    targets = "all-linear";
  } else if (!target_regex.empty()) {
    targets = target_regex;
  } else {
    auto sorted = target_modules;
    std::sort(sorted.begin(), sorted.end());
    sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
    targets = sorted;
  }
  const auto list_or_null = [](const std::vector<std::string>& v) { return v.empty() ? json(nullptr) : json(v); };
  return {{"alpha_pattern", json::object()},
          {"auto_mapping", nullptr},
          {"base_model_name_or_path", base_model_name_or_path},
          {"bias", "none"},
          {"eva_config", nullptr},
          {"exclude_modules", list_or_null(exclude_modules)},
          {"fan_in_fan_out", false},
          {"inference_mode", true},
          {"init_lora_weights", init_lora_weights},
          {"layer_replication", nullptr},
          {"layers_pattern", nullptr},
          {"layers_to_transform", nullptr},
          {"loftq_config", json::object()},
          {"lora_alpha", lora_alpha},
          {"lora_bias", false},
          {"lora_dropout", lora_dropout},
          {"megatron_config", nullptr},
          {"megatron_core", "megatron.core"},
          {"modules_to_save", list_or_null(modules_to_save)},
          {"peft_type", "LORA"},
          {"r", r},
          {"rank_pattern", json::object()},
          {"revision", nullptr},
          {"target_modules", targets},
          {"task_type", task_type.empty() ? json(nullptr) : json(task_type)},
          {"use_dora", false},
          {"use_rslora", use_rslora}};
}

LoraSettings lora_settings_from_json(const json& config, const std::string& source) {
  if (!config.is_object()) throw CheckpointError(source, "is not a JSON object");
  if (config.contains("peft_type") && config["peft_type"] != "LORA")
    throw CheckpointError(source, "peft_type " + config["peft_type"].dump() + " is not LORA");
  LoraSettings s;
  const std::set<std::string> read = {"r", "lora_alpha", "lora_dropout", "target_modules", "exclude_modules",
                                      "modules_to_save", "use_rslora", "init_lora_weights", "task_type",
                                      "base_model_name_or_path", "bias"};
  for (auto it = config.begin(); it != config.end(); ++it)
    if (!read.count(it.key()) && !kDescriptive.count(it.key()) && !neutral(it.value()))
      throw CheckpointError(source, it.key() + " " + it.value().dump() + " is not implemented (LoRA here: r, lora_alpha, "
                                    "lora_dropout, target_modules, exclude_modules, modules_to_save, use_rslora)");
  s.r = typed<std::int64_t>(config, "r", s.r, source);
  s.lora_alpha = typed<double>(config, "lora_alpha", s.lora_alpha, source);
  s.lora_dropout = typed<double>(config, "lora_dropout", s.lora_dropout, source);
  s.use_rslora = typed<bool>(config, "use_rslora", s.use_rslora, source);
  s.task_type = typed<std::string>(config, "task_type", "", source);
  s.base_model_name_or_path = typed<std::string>(config, "base_model_name_or_path", "", source);
  if (typed<std::string>(config, "bias", "none", source) != "none")
    throw CheckpointError(source, "bias " + config["bias"].dump() + " is not implemented (only \"none\")");
  if (config.contains("init_lora_weights") && !config["init_lora_weights"].is_boolean())
    throw CheckpointError(source, "init_lora_weights " + config["init_lora_weights"].dump() +
                                      " is not implemented (true: PEFT's default, false: B random too)");
  s.init_lora_weights = typed<bool>(config, "init_lora_weights", true, source);
  const auto targets = config.value("target_modules", json());
  if (targets.is_string()) {
    std::string text = targets.get<std::string>();
    std::string lower = text;
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
    if (lower == "all-linear")
      s.all_linear = true;
    else
      s.target_regex = text;
  } else {
    s.target_modules = string_list(targets, source, "target_modules");
  }
  s.exclude_modules = string_list(config.value("exclude_modules", json()), source, "exclude_modules");
  s.modules_to_save = string_list(config.value("modules_to_save", json()), source, "modules_to_save");
  s.validate(source);
  return s;
}

LoraSettings read_adapter_config(const std::string& dir) {
  const auto path = dir + "/" + kAdapterConfigFile;
  return lora_settings_from_json(checkpoint::read_json_file(path), path);
}

}  // namespace mpitrain::models
