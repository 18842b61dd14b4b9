// Reading a tokenizer.json component: its type, typed fields with defaults, and the one-line error that names the file, the component and the field.
#include "src/tokenizers/component_json.h"

namespace mpitrain::tokenizers {

ComponentJson::ComponentJson(const nlohmann::json& value, std::string file, std::string path)
    : value_(value), file_(std::move(file)), path_(std::move(path)) {
  if (!value_.is_object()) fail("must be an object");
  const auto it = value_.find("type");
  if (it != value_.end()) {
    if (!it->is_string()) fail("'type' must be a string");
    type_ = it->get<std::string>();
  }
}

void ComponentJson::fail(const std::string& what) const { throw TokenizerError(where() + ": " + what); }

void ComponentJson::unsupported() const {
  fail("type '" + type_ + "' is not supported by mpitrain's tokenizer (it would not give the library's tokens)");
}

bool ComponentJson::bool_or(const char* key, bool fallback) const {
  const auto it = value_.find(key);
  if (it == value_.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) fail(std::string("'") + key + "' must be true or false");
  return it->get<bool>();
}

std::string ComponentJson::string_or(const char* key, const std::string& fallback) const {
  const auto it = value_.find(key);
  if (it == value_.end() || it->is_null()) return fallback;
  if (!it->is_string()) fail(std::string("'") + key + "' must be a string");
  return it->get<std::string>();
}

std::string ComponentJson::require_string(const char* key) const {
  const auto it = value_.find(key);
  if (it == value_.end() || !it->is_string()) fail(std::string("'") + key + "' must be a string");
  return it->get<std::string>();
}

std::int64_t ComponentJson::int_or(const char* key, std::int64_t fallback) const {
  const auto it = value_.find(key);
  if (it == value_.end() || it->is_null()) return fallback;
  if (!it->is_number_integer()) fail(std::string("'") + key + "' must be an integer");
  return it->get<std::int64_t>();
}

std::size_t ComponentJson::array_size(const char* key) const {
  const auto it = value_.find(key);
  if (it == value_.end() || !it->is_array()) fail(std::string("'") + key + "' must be an array");
  return it->size();
}

ComponentJson ComponentJson::child(const char* key, std::size_t index) const {
  array_size(key);
  return ComponentJson(value_.at(key).at(index), file_, path_ + "." + key + "[" + std::to_string(index) + "]");
}

ComponentJson ComponentJson::child(const char* key) const {
  const auto it = value_.find(key);
  if (it == value_.end()) fail(std::string("'") + key + "' is missing");
  return ComponentJson(*it, file_, path_ + "." + key);
}

}  // namespace mpitrain::tokenizers
