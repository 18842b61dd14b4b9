// The decoders of tokenizer.json (ByteLevel, Metaspace, WordPiece, Replace, ByteFallback, Fuse, Strip, Sequence): tokens back to text.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "src/tokenizers/component_json.h"

namespace mpitrain::tokenizers {

class Decoder {
 public:
  virtual ~Decoder() = default;
  // One step of the chain: the tokens as the next step sees them (the text is their concatenation).
  virtual std::vector<std::string> decode_chain(std::vector<std::string> tokens) const = 0;
  std::string decode(std::vector<std::string> tokens) const;
};

// Null JSON: none. An unsupported type (CTC, BPEDecoder) is a TokenizerError naming it.
std::unique_ptr<Decoder> make_decoder(const ComponentJson& component);

}  // namespace mpitrain::tokenizers
