// The normalizers of tokenizer.json (NFC/NFD/NFKC/NFKD, Lowercase, Strip, StripAccents, Replace, Prepend, BertNormalizer, Sequence): text in, text out.
#include "src/tokenizers/normalizers.h"

#include <vector>

#include "src/tokenizers/text_pattern.h"
#include "src/tokenizers/unicode_text.h"

namespace mpitrain::tokenizers {

namespace {

// Keeps the characters `keep` accepts, each replaced by `map` (a code point).
template <class Keep, class Map>
std::string filter_map(const std::string& text, Keep keep, Map map) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    const char32_t c = next_code_point(text, i);
    if (keep(c)) append_utf8(out, map(c));
  }
  return out;
}

class UnicodeForm : public Normalizer {
 public:
  explicit UnicodeForm(NormalizationForm form) : form_(form) {}
  std::string normalize(const std::string& text) const override { return tokenizers::normalize(text, form_); }

 private:
  NormalizationForm form_;
};

class Lowercase : public Normalizer {
 public:
  std::string normalize(const std::string& text) const override { return lowercase(text); }
};

class Strip : public Normalizer {
 public:
  Strip(bool left, bool right) : left_(left), right_(right) {}
  std::string normalize(const std::string& text) const override {
    // Whitespace as Rust's char::is_whitespace, one character at a time from each end.
    std::size_t begin = 0, end = text.size();
    if (left_)
      for (std::size_t i = 0; i < end;) {
        if (!is_whitespace(next_code_point(text, i))) break;
        begin = i;
      }
    if (right_)
      while (end > begin) {
        std::size_t start = end - 1;
        while (start > begin && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
        std::size_t i = start;
        if (!is_whitespace(next_code_point(text, i))) break;
        end = start;
      }
    return text.substr(begin, end - begin);
  }

 private:
  bool left_, right_;
};

class StripAccents : public Normalizer {
 public:
  std::string normalize(const std::string& text) const override {
    // Any combining mark (Mn, Mc, Me), as the library's is_combining_mark.
    return filter_map(text, [](char32_t c) { return !is_mark(c); }, [](char32_t c) { return c; });
  }
};

class Replace : public Normalizer {
 public:
  explicit Replace(const ComponentJson& c) : pattern_(c, "pattern"), content_(c.require_string("content")) {}
  std::string normalize(const std::string& text) const override { return pattern_.replace_all(text, content_); }

 private:
  TextPattern pattern_;
  std::string content_;
};

class Prepend : public Normalizer {
 public:
  explicit Prepend(std::string prefix) : prefix_(std::move(prefix)) {}
  std::string normalize(const std::string& text) const override { return text.empty() ? text : prefix_ + text; }

 private:
  std::string prefix_;
};

// BERT's CJK ideograph blocks (the ranges Google's BERT code lists), spaced out as words.
bool is_chinese_char(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

class BertNormalizer : public Normalizer {
 public:
  explicit BertNormalizer(const ComponentJson& c)
      : clean_text_(c.bool_or("clean_text", true)),
        chinese_chars_(c.bool_or("handle_chinese_chars", true)),
        lowercase_(c.bool_or("lowercase", true)),
        // null: as lowercase says
        strip_accents_(c.bool_or("strip_accents", lowercase_)) {}

  std::string normalize(const std::string& text) const override {
    std::string out = text;
    if (clean_text_) {
      // \t \n \r count as whitespace, not control; NUL, U+FFFD and other controls go.
      const auto whitespace = [](char32_t c) { return c == U'\t' || c == U'\n' || c == U'\r' || is_whitespace(c); };
      const auto control = [](char32_t c) { return c != U'\t' && c != U'\n' && c != U'\r' && is_other(c); };
      out = filter_map(
          out, [&](char32_t c) { return !(c == 0 || c == 0xFFFD || control(c)); },
          [&](char32_t c) { return whitespace(c) ? U' ' : c; });
    }
    if (chinese_chars_) {
      std::string spaced;
      spaced.reserve(out.size());
      for (std::size_t i = 0; i < out.size();) {
        const char32_t c = next_code_point(out, i);
        if (is_chinese_char(c)) {
          spaced += ' ';
          append_utf8(spaced, c);
          spaced += ' ';
        } else {
          append_utf8(spaced, c);
        }
      }
      out = std::move(spaced);
    }
    if (strip_accents_) {
      out = tokenizers::normalize(out, NormalizationForm::kNfd);
      out = filter_map(out, [](char32_t c) { return !is_nonspacing_mark(c); }, [](char32_t c) { return c; });
    }
    if (lowercase_) out = lowercase(out);
    return out;
  }

 private:
  bool clean_text_, chinese_chars_, lowercase_, strip_accents_;
};

class NormalizerSequence : public Normalizer {
 public:
  explicit NormalizerSequence(const ComponentJson& c) {
    for (std::size_t i = 0; i < c.array_size("normalizers"); ++i)
      if (auto n = make_normalizer(c.child("normalizers", i))) steps_.push_back(std::move(n));
  }
  std::string normalize(const std::string& text) const override {
    std::string out = text;
    for (const auto& step : steps_) out = step->normalize(out);
    return out;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const ComponentJson& c) {
  const auto& type = c.type();
  if (type == "NFC") return std::make_unique<UnicodeForm>(NormalizationForm::kNfc);
  if (type == "NFD") return std::make_unique<UnicodeForm>(NormalizationForm::kNfd);
  if (type == "NFKC") return std::make_unique<UnicodeForm>(NormalizationForm::kNfkc);
  if (type == "NFKD") return std::make_unique<UnicodeForm>(NormalizationForm::kNfkd);
  if (type == "Lowercase") return std::make_unique<Lowercase>();
  if (type == "Strip") return std::make_unique<Strip>(c.bool_or("strip_left", true), c.bool_or("strip_right", true));
  if (type == "StripAccents") return std::make_unique<StripAccents>();
  if (type == "Replace") return std::make_unique<Replace>(c);
  if (type == "Prepend") return std::make_unique<Prepend>(c.require_string("prepend"));
  if (type == "BertNormalizer") return std::make_unique<BertNormalizer>(c);
  if (type == "Sequence") return std::make_unique<NormalizerSequence>(c);
  c.unsupported();
}

}  // namespace mpitrain::tokenizers
