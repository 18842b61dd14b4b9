// The normalizers of tokenizer.json (NFC/NFD/NFKC/NFKD, Lowercase, Strip, StripAccents, Replace, Prepend, BertNormalizer, Sequence): text in, text out.
#pragma once

#include <memory>

#include "src/tokenizers/component_json.h"

namespace mpitrain::tokenizers {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual std::string normalize(const std::string& text) const = 0;
};

// Null JSON: none (nullptr). An unsupported type (Precompiled, NmtNormalizer, ...) is a
// TokenizerError naming it.
std::unique_ptr<Normalizer> make_normalizer(const ComponentJson& component);

}  // namespace mpitrain::tokenizers
