// A tokenizer.json pattern, {"String": "..."} (literal) or {"Regex": "..."}: where it matches in a text.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "src/tokenizers/component_json.h"
#include "src/tokenizers/regex.h"
#include "src/tokenizers/split_text.h"

namespace mpitrain::tokenizers {

class TextPattern {
 public:
  // The pattern object under `key` of `component`; a bad one is a TokenizerError naming it.
  TextPattern(const ComponentJson& component, const char* key);
  Ranges matches(std::string_view text) const;
  // `text` with every match replaced by `content`.
  std::string replace_all(std::string_view text, const std::string& content) const;

 private:
  std::string literal_;
  std::shared_ptr<const Regex> regex_;
};

}  // namespace mpitrain::tokenizers
