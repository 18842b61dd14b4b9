// The pre-tokenizers of tokenizer.json (ByteLevel, Split, Metaspace, Whitespace, WhitespaceSplit, BertPreTokenizer, Digits, Punctuation, Sequence): a text's splits cut into the words the model sees.
#include "src/tokenizers/pre_tokenizers.h"

#include "src/tokenizers/byte_level.h"
#include "src/tokenizers/regex.h"
#include "src/tokenizers/text_pattern.h"
#include "src/tokenizers/unicode_text.h"

namespace mpitrain::tokenizers {

namespace {

bool is_bert_punctuation(char32_t c) { return is_ascii_punctuation(c) || is_punctuation(c); }

// GPT-2's pattern: contractions, letters, digits, other symbols, each with one leading space.
const Regex& gpt2_pattern() {
  static const Regex pattern(R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)");
  return pattern;
}

class ByteLevelPre : public PreTokenizer {
 public:
  explicit ByteLevelPre(const ComponentJson& c)
      : add_prefix_space_(c.bool_or("add_prefix_space", true)), use_regex_(c.bool_or("use_regex", true)) {}
  void pre_tokenize(std::vector<Split>& splits) const override {
    resplit(splits, [this](const std::string& text) {
      const std::string spaced = add_prefix_space_ && text.compare(0, 1, " ") != 0 ? " " + text : text;
      std::vector<std::string> words =
          use_regex_ ? split_on_matches(spaced, gpt2_pattern().find_all(spaced), SplitBehavior::kIsolated)
                     : std::vector<std::string>{spaced};
      for (auto& word : words) word = bytes_to_alphabet(word);
      return words;
    });
  }

 private:
  bool add_prefix_space_, use_regex_;
};

class SplitPre : public PreTokenizer {
 public:
  explicit SplitPre(const ComponentJson& c)
      : pattern_(c, "pattern"),
        behavior_(parse_split_behavior(c.require_string("behavior"), c.where())),
        invert_(c.bool_or("invert", false)) {}
  void pre_tokenize(std::vector<Split>& splits) const override {
    resplit(splits, [this](const std::string& text) {
      return split_on_matches(text, pattern_.matches(text), behavior_, invert_);
    });
  }

 private:
  TextPattern pattern_;
  SplitBehavior behavior_;
  bool invert_;
};

class Metaspace : public PreTokenizer {
 public:
  explicit Metaspace(const ComponentJson& c) : split_(c.bool_or("split", true)) {
    replacement_ = c.string_or("replacement", "\u2581");
    if (code_point_count(replacement_) != 1) c.fail("'replacement' must be one character");
    // Older files say add_prefix_space instead of prepend_scheme.
    scheme_ = c.string_or("prepend_scheme", c.bool_or("add_prefix_space", true) ? "always" : "never");
    if (scheme_ != "always" && scheme_ != "first" && scheme_ != "never")
      c.fail("prepend_scheme '" + scheme_ + "' is not always, first or never");
  }
  void pre_tokenize(std::vector<Split>& splits) const override {
    for (auto& s : splits) {
      if (s.token) continue;
      std::string text;
      text.reserve(s.text.size());
      for (const char ch : s.text) {
        if (ch == ' ') text += replacement_;
        else text += ch;
      }
      const bool starts = text.compare(0, replacement_.size(), replacement_) == 0;
      if (!starts && (scheme_ == "always" || (scheme_ == "first" && s.at_text_start))) text = replacement_ + text;
      s.text = std::move(text);
    }
    if (!split_) return;
    resplit(splits, [this](const std::string& text) {
      return split_on_matches(text, literal_matches(text, replacement_), SplitBehavior::kMergedWithNext);
    });
  }

 private:
  std::string replacement_, scheme_;
  bool split_;
};

// Splits on characters `is_delimiter` accepts, with `behavior`.
class CharacterSplit : public PreTokenizer {
 public:
  CharacterSplit(bool (*is_delimiter)(char32_t), SplitBehavior behavior) : is_delimiter_(is_delimiter), behavior_(behavior) {}
  void pre_tokenize(std::vector<Split>& splits) const override {
    resplit(splits, [this](const std::string& text) {
      return split_on_matches(text, character_matches(text, is_delimiter_), behavior_);
    });
  }

 private:
  bool (*is_delimiter_)(char32_t);
  SplitBehavior behavior_;
};

// Words (\w+) and runs of other non-space characters; whitespace dropped.
class Whitespace : public PreTokenizer {
 public:
  void pre_tokenize(std::vector<Split>& splits) const override {
    static const Regex words(R"(\w+|[^\w\s]+)");
    resplit(splits, [](const std::string& text) {
      return split_on_matches(text, words.find_all(text), SplitBehavior::kRemoved, /*invert=*/true);
    });
  }
};

class PreTokenizerSequence : public PreTokenizer {
 public:
  explicit PreTokenizerSequence(const ComponentJson& c) {
    for (std::size_t i = 0; i < c.array_size("pretokenizers"); ++i)
      if (auto p = make_pre_tokenizer(c.child("pretokenizers", i))) steps_.push_back(std::move(p));
  }
  void pre_tokenize(std::vector<Split>& splits) const override {
    for (const auto& step : steps_) step->pre_tokenize(splits);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

class Several : public PreTokenizer {
 public:
  template <class... Steps>
  explicit Several(Steps... steps) {
    (steps_.push_back(std::move(steps)), ...);
  }
  void pre_tokenize(std::vector<Split>& splits) const override {
    for (const auto& step : steps_) step->pre_tokenize(splits);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

}  // namespace

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const ComponentJson& c) {
  const auto& type = c.type();
  if (type == "ByteLevel") return std::make_unique<ByteLevelPre>(c);
  if (type == "Split") return std::make_unique<SplitPre>(c);
  if (type == "Metaspace") return std::make_unique<Metaspace>(c);
  if (type == "Whitespace") return std::make_unique<Whitespace>();
  if (type == "WhitespaceSplit") return std::make_unique<CharacterSplit>(is_whitespace, SplitBehavior::kRemoved);
  if (type == "BertPreTokenizer")
    return std::make_unique<Several>(std::make_unique<CharacterSplit>(is_whitespace, SplitBehavior::kRemoved),
                                     std::make_unique<CharacterSplit>(is_bert_punctuation, SplitBehavior::kIsolated));
  if (type == "Punctuation")
    return std::make_unique<CharacterSplit>(is_bert_punctuation,
                                            parse_split_behavior(c.string_or("behavior", "Isolated"), c.where()));
  if (type == "Digits")
    return std::make_unique<CharacterSplit>(
        is_numeric, c.bool_or("individual_digits", false) ? SplitBehavior::kIsolated : SplitBehavior::kContiguous);
  if (type == "Sequence") return std::make_unique<PreTokenizerSequence>(c);
  c.unsupported();
}

}  // namespace mpitrain::tokenizers
