// The WordPiece model (greedy longest match with a continuation prefix, the whole word unk when a piece is missing) and WordLevel (one id per word); and the model factory.
#include "src/tokenizers/models.h"
#include "src/tokenizers/unicode_text.h"

namespace mpitrain::tokenizers {

std::unique_ptr<Model> make_bpe_model(const ComponentJson& c);  // bpe.cpp

namespace {

int required_unk(const Vocabulary& vocabulary, const ComponentJson& c, const std::string& fallback) {
  const auto unk = c.string_or("unk_token", fallback);
  const auto id = vocabulary.id(unk);
  if (!id) c.fail("unk_token '" + unk + "' is not in the vocabulary");
  return *id;
}

class WordPiece : public Model {
 public:
  explicit WordPiece(const ComponentJson& c)
      : Model(Vocabulary::from_json(c, "vocab")),
        unk_id_(required_unk(vocabulary_, c, "[UNK]")),
        prefix_(c.string_or("continuing_subword_prefix", "##")),
        max_chars_(static_cast<std::size_t>(c.int_or("max_input_chars_per_word", 100))) {}

  void tokenize(const std::string& word, std::vector<int>& ids) const override {
    if (word.empty()) return;
    if (code_point_count(word) > max_chars_) {
      ids.push_back(unk_id_);
      return;
    }
    const std::size_t first = ids.size();
    std::string candidate;
    for (std::size_t start = 0; start < word.size();) {
      std::size_t end = word.size();
      std::optional<int> found;
      while (start < end) {
        candidate.assign(start > 0 ? prefix_ : std::string());
        candidate.append(word, start, end - start);
        if ((found = vocabulary_.id(candidate))) break;
        // One character shorter.
        do --end;
        while (end > start && (static_cast<unsigned char>(word[end]) & 0xC0) == 0x80);
      }
      if (!found) {  // a piece is missing: the whole word is unk
        ids.resize(first);
        ids.push_back(unk_id_);
        return;
      }
      ids.push_back(*found);
      start = end;
    }
  }

 private:
  int unk_id_;
  std::string prefix_;
  std::size_t max_chars_;
};

class WordLevel : public Model {
 public:
  explicit WordLevel(const ComponentJson& c) : Model(Vocabulary::from_json(c, "vocab")), unk_id_(required_unk(vocabulary_, c, "<unk>")) {}
  void tokenize(const std::string& word, std::vector<int>& ids) const override {
    if (!word.empty()) ids.push_back(vocabulary_.id(word).value_or(unk_id_));
  }

 private:
  int unk_id_;
};

}  // namespace

std::unique_ptr<Model> make_model(const ComponentJson& c) {
  // Older files leave the type out: merges say BPE.
  const auto type = c.type().empty() ? (c.json().contains("merges") ? "BPE" : "") : c.type();
  if (type == "BPE") return make_bpe_model(c);
  if (type == "WordPiece") return std::make_unique<WordPiece>(c);
  if (type == "WordLevel") return std::make_unique<WordLevel>(c);
  c.unsupported();
}

}  // namespace mpitrain::tokenizers
