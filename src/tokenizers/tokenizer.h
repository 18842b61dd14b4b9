// A Hugging Face tokenizer read from tokenizer.json, in C++: encode (one text or a pair, with or without special tokens) and decode, id for id what the tokenizers library gives.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "src/tokenizers/added_tokens.h"
#include "src/tokenizers/decoders.h"
#include "src/tokenizers/models.h"
#include "src/tokenizers/normalizers.h"
#include "src/tokenizers/post_processors.h"
#include "src/tokenizers/pre_tokenizers.h"

namespace mpitrain::tokenizers {

// The pipeline: added tokens split out, normalizer, pre-tokenizer, model, post-processor;
// decoding through the decoder. Immutable once loaded: safe to share between threads.
class Tokenizer {
 public:
  // Reads `path` (a tokenizer.json). Every problem, an unsupported component included, is a
  // TokenizerError of one line naming the file and the component.
  static Tokenizer from_file(const std::string& path);
  // A model or tokenizer directory (its tokenizer.json) or the file itself.
  static Tokenizer from_path(const std::string& path);
  static Tokenizer from_json(const nlohmann::json& json, const std::string& file);

  Encoding encode(const std::string& text, bool add_special_tokens = true) const;
  Encoding encode_pair(const std::string& text, const std::string& pair, bool add_special_tokens = true) const;
  std::string decode(const std::vector<int>& ids, bool skip_special_tokens = true) const;
  // Sequences encoded without special tokens, joined as add_special_tokens would (type ids 0, 1).
  Encoding post_process(Encoding first, std::optional<Encoding> second) const;

  std::optional<int> token_to_id(const std::string& token) const;
  std::optional<std::string> id_to_token(int id) const;
  // The largest id plus one (the embedding rows a model needs), added tokens included.
  int vocab_size() const;
  const AddedTokens& added_tokens() const { return *added_; }

 private:
  Tokenizer() = default;
  Encoding encode_sequence(const std::string& text, int type_id) const;

  std::string file_;
  std::shared_ptr<const Normalizer> normalizer_;
  std::shared_ptr<const PreTokenizer> pre_tokenizer_;
  std::shared_ptr<const Model> model_;
  std::shared_ptr<const PostProcessor> post_processor_;
  std::shared_ptr<const Decoder> decoder_;
  std::shared_ptr<const AddedTokens> added_;
};

}  // namespace mpitrain::tokenizers
