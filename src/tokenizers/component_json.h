// Reading a tokenizer.json component: its type, typed fields with defaults, and the one-line error that names the file, the component and the field.
#pragma once

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace mpitrain::tokenizers {

// A problem with a tokenizer file: "FILE: normalizer.normalizers[1]: type 'Precompiled' is not supported".
struct TokenizerError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A component object at `path` ("pre_tokenizer.pretokenizers[0]") of `file`.
class ComponentJson {
 public:
  ComponentJson(const nlohmann::json& value, std::string file, std::string path);

  const std::string& type() const { return type_; }  // its "type" ("" where it has none)
  const nlohmann::json& json() const { return value_; }
  std::string where() const { return file_ + ": " + path_; }
  [[noreturn]] void fail(const std::string& what) const;
  [[noreturn]] void unsupported() const;  // its type is not one mpitrain reads

  bool bool_or(const char* key, bool fallback) const;
  std::string string_or(const char* key, const std::string& fallback) const;
  std::string require_string(const char* key) const;
  std::int64_t int_or(const char* key, std::int64_t fallback) const;
  // A nested component: `key` ("normalizers") at position `index` of an array, or itself.
  ComponentJson child(const char* key, std::size_t index) const;
  ComponentJson child(const char* key) const;
  std::size_t array_size(const char* key) const;  // `key` must be an array
  const std::string& file() const { return file_; }

 private:
  const nlohmann::json& value_;
  std::string file_, path_, type_;
};

}  // namespace mpitrain::tokenizers
