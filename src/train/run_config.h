// The run configuration: model, data, training (HF TrainingArguments names) and parallel sections, with overrides.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace mpitrain::train {

// Thrown for a bad configuration; the message names the key (and the file).
struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Every key the run accepts, with its section, type and default.
struct KeySpec {
  std::string section, name;
  enum class Type { kInt, kFloat, kBool, kString, kObject, kPathOrBool, kNames } type;  // kNames: a list of names, one string, or null
  nlohmann::json default_value;
  std::string help;
  std::string dotted() const { return section + "." + name; }
};
const std::vector<KeySpec>& config_keys();

// Reads CONFIG.json (sections model, data, training, parallel), applies command-line
// overrides (`--max_steps=0`, `--training.max_steps=0`, `--key value`) and fills defaults.
// Unknown keys, wrong types and invalid values throw ConfigError naming the key and, for an
// unknown one, the closest valid key. Relative paths stay relative to the working directory.
nlohmann::json load_run_config(const std::string& path, const std::vector<std::string>& overrides);

// The valid key closest to `name` (edit distance), for "did you mean" hints.
std::string closest_key(const std::string& name);

}  // namespace mpitrain::train
