// The pre-tokenizers of tokenizer.json (ByteLevel, Split, Metaspace, Whitespace, WhitespaceSplit, BertPreTokenizer, Digits, Punctuation, Sequence): a text's splits cut into the words the model sees.
#pragma once

#include <memory>
#include <vector>

#include "src/tokenizers/component_json.h"
#include "src/tokenizers/split_text.h"

namespace mpitrain::tokenizers {

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Cuts every split that is not a token yet; tokens pass through.
  virtual void pre_tokenize(std::vector<Split>& splits) const = 0;
};

// Null JSON: none. An unsupported type (UnicodeScripts, CharDelimiterSplit, ...) is a
// TokenizerError naming it.
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const ComponentJson& component);

}  // namespace mpitrain::tokenizers
