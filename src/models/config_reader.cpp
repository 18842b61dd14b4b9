// Typed access to a config.json with errors that name the file, the key and what was expected.
#include "src/models/config_reader.h"

#include <cmath>

#include "runtime/checkpoint/checkpoint_error.h"
#include "src/models/layers.h"

namespace mpitrain::models {

ConfigReader::ConfigReader(const nlohmann::json& config, std::string source)
    : config_(config), source_(std::move(source)) {
  if (!config_.is_object()) fail("config is not a JSON object");
}

void ConfigReader::fail(const std::string& problem) const { throw checkpoint::CheckpointError(source_, problem); }

const nlohmann::json* ConfigReader::value(const std::string& key) const {
  auto it = config_.find(key);
  if (it == config_.end() || it->is_null()) return nullptr;
  return &*it;
}

bool ConfigReader::has(const std::string& key) const { return value(key) != nullptr; }

std::int64_t ConfigReader::require_int(const std::string& key) const {
  const auto* v = value(key);
  if (!v) fail("missing required key '" + key + "'");
  if (!v->is_number_integer() || v->get<std::int64_t>() <= 0)
    fail("key '" + key + "' must be a positive integer, got " + v->dump());
  return v->get<std::int64_t>();
}

std::int64_t ConfigReader::int_or(const std::string& key, std::int64_t fallback) const {
  const auto* v = value(key);
  if (!v) return fallback;
  if (!v->is_number_integer()) fail("key '" + key + "' must be an integer, got " + v->dump());
  return v->get<std::int64_t>();
}

double ConfigReader::double_or(const std::string& key, double fallback) const {
  const auto* v = value(key);
  if (!v) return fallback;
  if (!v->is_number()) fail("key '" + key + "' must be a number, got " + v->dump());
  return v->get<double>();
}

double ConfigReader::positive_double_or(const std::string& key, double fallback) const {
  const auto v = double_or(key, fallback);
  if (!(v > 0) || !std::isfinite(v)) fail("key '" + key + "' must be a positive number, got " + value(key)->dump());
  return v;
}

double ConfigReader::probability_or(const std::string& key, double fallback) const {
  const auto v = double_or(key, fallback);
  if (!(v >= 0 && v <= 1)) fail("key '" + key + "' must be a probability in [0, 1], got " + value(key)->dump());
  return v;
}

bool ConfigReader::bool_or(const std::string& key, bool fallback) const {
  const auto* v = value(key);
  if (!v) return fallback;
  if (!v->is_boolean()) fail("key '" + key + "' must be true or false, got " + v->dump());
  return v->get<bool>();
}

std::string ConfigReader::string_or(const std::string& key, const std::string& fallback) const {
  const auto* v = value(key);
  if (!v) return fallback;
  if (!v->is_string()) fail("key '" + key + "' must be a string, got " + v->dump());
  return v->get<std::string>();
}

std::string ConfigReader::activation_or(const std::string& key, const std::string& fallback) const {
  const auto name = string_or(key, fallback);
  try {
    check_activation_name(name);
  } catch (const std::exception& e) {
    fail(key + ": " + e.what());
  }
  return name;
}

std::int64_t ConfigReader::num_labels() const {
  const auto* id2label = value("id2label");
  const auto labels = id2label && id2label->is_object() && !id2label->empty() ? static_cast<std::int64_t>(id2label->size())
                                                                              : int_or("num_labels", 2);
  if (labels <= 0) fail("num_labels must be positive");
  return labels;
}

bool names_architecture(const nlohmann::json& config, const std::string& architecture) {
  const auto it = config.find("architectures");
  if (it == config.end() || !it->is_array()) return false;
  for (const auto& name : *it)
    if (name.is_string() && name.get<std::string>() == architecture) return true;
  return false;
}

}  // namespace mpitrain::models
