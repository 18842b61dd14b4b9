// Typed access to a config.json with errors that name the file, the key and what was expected.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace mpitrain::models {

class ConfigReader {
 public:
  ConfigReader(const nlohmann::json& config, std::string source);

  std::int64_t require_int(const std::string& key) const;  // must be present, a positive integer
  std::int64_t int_or(const std::string& key, std::int64_t fallback) const;  // null counts as absent
  double double_or(const std::string& key, double fallback) const;
  // A finite number > 0 (an epsilon, a RoPE base): 0 or less trains NaN to the end.
  double positive_double_or(const std::string& key, double fallback) const;
  // A dropout probability, in [0, 1].
  double probability_or(const std::string& key, double fallback) const;
  bool bool_or(const std::string& key, bool fallback) const;
  std::string string_or(const std::string& key, const std::string& fallback) const;
  bool has(const std::string& key) const;
  // A transformers activation name (ACT2FN) this project implements; fails naming the key otherwise.
  std::string activation_or(const std::string& key, const std::string& fallback) const;
  // A classifier's label count as transformers derives it: id2label's size where it has
  // entries, else num_labels, else 2. Fails naming the key for a count below 1.
  std::int64_t num_labels() const;

  [[noreturn]] void fail(const std::string& problem) const;  // throws CheckpointError(source, problem)
  const std::string& source() const { return source_; }

 private:
  const nlohmann::json* value(const std::string& key) const;  // nullptr when absent or null
  const nlohmann::json& config_;
  std::string source_;
};

// Whether the config's "architectures" list names `architecture` (it chooses the head).
bool names_architecture(const nlohmann::json& config, const std::string& architecture);

}  // namespace mpitrain::models
