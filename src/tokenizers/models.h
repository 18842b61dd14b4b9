// The tokenizer.json models (BPE, WordPiece, WordLevel): one pre-tokenized word to token ids, and the vocabulary both ways.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "src/tokenizers/component_json.h"

namespace mpitrain::tokenizers {

// A model's vocabulary: token <-> id, checked (ids unique, non-negative, no token twice).
class Vocabulary {
 public:
  // `vocab` is {"token": id, ...}; problems are TokenizerErrors naming `component`.
  static Vocabulary from_json(const ComponentJson& component, const char* key);
  std::optional<int> id(const std::string& token) const;
  const std::string* token(int id) const;
  std::size_t size() const { return ids_.size(); }
  int max_id() const { return static_cast<int>(tokens_.size()) - 1; }

 private:
  std::unordered_map<std::string, int> ids_;
  std::vector<std::string> tokens_;  // by id; "" for an id not used
};

class Model {
 public:
  virtual ~Model() = default;
  // Appends the ids of `word` (one pre-tokenizer split) to `ids`.
  virtual void tokenize(const std::string& word, std::vector<int>& ids) const = 0;
  const Vocabulary& vocabulary() const { return vocabulary_; }

 protected:
  explicit Model(Vocabulary vocabulary) : vocabulary_(std::move(vocabulary)) {}
  Vocabulary vocabulary_;
};

// BPE, WordPiece or WordLevel; anything else (Unigram) is a TokenizerError naming it.
std::unique_ptr<Model> make_model(const ComponentJson& component);

}  // namespace mpitrain::tokenizers
