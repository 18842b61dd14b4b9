// The decoders of tokenizer.json (ByteLevel, Metaspace, WordPiece, Replace, ByteFallback, Fuse, Strip, Sequence): tokens back to text.
#include "src/tokenizers/decoders.h"

#include "src/tokenizers/byte_level.h"
#include "src/tokenizers/text_pattern.h"
#include "src/tokenizers/unicode_text.h"

namespace mpitrain::tokenizers {

std::string Decoder::decode(std::vector<std::string> tokens) const {
  std::string text;
  for (const auto& t : decode_chain(std::move(tokens))) text += t;
  return text;
}

namespace {

const char* const kReplacementCharacter = "\xEF\xBF\xBD";  // U+FFFD

// Invalid UTF-8 becomes U+FFFD, one per maximal bad sequence, as Rust's from_utf8_lossy.
std::string utf8_lossy(const std::string& bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (std::size_t i = 0; i < bytes.size();) {
    const std::size_t begin = i;
    const char32_t c = next_code_point(bytes, i);
    if (c == 0xFFFD && bytes.compare(begin, 3, kReplacementCharacter) != 0) out += kReplacementCharacter;
    else out.append(bytes, begin, i - begin);
  }
  return out;
}

bool valid_utf8(const std::string& bytes) {
  for (std::size_t i = 0; i < bytes.size();) {
    const std::size_t begin = i;
    if (next_code_point(bytes, i) == 0xFFFD && bytes.compare(begin, 3, kReplacementCharacter) != 0) return false;
  }
  return true;
}

// Every token's characters back to the bytes they stand for (a token with a character outside
// the alphabet stays as it is), all joined into one text.
class ByteLevelDecoder : public Decoder {
 public:
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    std::string bytes;
    for (const auto& token : tokens) {
      std::string mine;
      bool all = true;
      for (std::size_t i = 0; i < token.size() && all;) {
        const auto b = alphabet_byte(next_code_point(token, i));
        if (b) mine += static_cast<char>(*b);
        else all = false;
      }
      bytes += all ? mine : token;
    }
    return {utf8_lossy(bytes)};
  }
};

class MetaspaceDecoder : public Decoder {
 public:
  explicit MetaspaceDecoder(const ComponentJson& c) {
    replacement_ = c.string_or("replacement", "\u2581");
    const auto scheme = c.string_or("prepend_scheme", c.bool_or("add_prefix_space", true) ? "always" : "never");
    drop_first_ = scheme != "never";
  }
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      std::string out;
      const auto& t = tokens[i];
      for (std::size_t at = 0; at < t.size();) {
        if (t.compare(at, replacement_.size(), replacement_) == 0) {
          // In the first token the prepended replacement goes (every one of them, as the library does).
          if (!(i == 0 && drop_first_)) out += ' ';
          at += replacement_.size();
        } else {
          out += t[at++];
        }
      }
      tokens[i] = std::move(out);
    }
    return tokens;
  }

 private:
  std::string replacement_;
  bool drop_first_ = true;
};

class WordPieceDecoder : public Decoder {
 public:
  explicit WordPieceDecoder(const ComponentJson& c) : prefix_(c.string_or("prefix", "##")), cleanup_(c.bool_or("cleanup", true)) {}
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      auto& t = tokens[i];
      if (i != 0) {
        if (t.compare(0, prefix_.size(), prefix_) == 0) t.erase(0, prefix_.size());
        else t.insert(0, " ");
      }
      if (cleanup_) t = cleanup(t);
    }
    return tokens;
  }

 private:
  // The spaces BERT's tokenization put before punctuation and contractions, taken out.
  static std::string cleanup(std::string text) {
    static const std::pair<const char*, const char*> kReplacements[] = {
        {" .", "."},   {" ?", "?"},     {" !", "!"},           {" ,", ","},    {" ' ", "'"},  {" n't", "n't"},
        {" 'm", "'m"}, {" do not", " don't"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
    for (const auto& [from, to] : kReplacements) {
      const std::string needle = from, with = to;
      std::string out;
      std::size_t previous = 0;
      for (std::size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, previous)) {
        out.append(text, previous, at - previous);
        out += with;
        previous = at + needle.size();
      }
      out.append(text, previous, std::string::npos);
      text = std::move(out);
    }
    return text;
  }

  std::string prefix_;
  bool cleanup_;
};

class ReplaceDecoder : public Decoder {
 public:
  explicit ReplaceDecoder(const ComponentJson& c) : pattern_(c, "pattern"), content_(c.require_string("content")) {}
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (auto& t : tokens) t = pattern_.replace_all(t, content_);
    return tokens;
  }

 private:
  TextPattern pattern_;
  std::string content_;
};

// <0xAB> tokens: a run of them is the UTF-8 text of its bytes, or one U+FFFD per byte where invalid.
class ByteFallbackDecoder : public Decoder {
 public:
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    std::vector<std::string> out;
    std::string run;
    const auto flush = [&] {
      if (run.empty()) return;
      if (valid_utf8(run)) out.push_back(run);
      else
        for (std::size_t i = 0; i < run.size(); ++i) out.push_back(kReplacementCharacter);
      run.clear();
    };
    for (auto& t : tokens) {
      if (const auto byte = byte_token(t)) {
        run += static_cast<char>(*byte);
        continue;
      }
      flush();
      out.push_back(std::move(t));
    }
    flush();
    return out;
  }

 private:
  static std::optional<int> byte_token(const std::string& t) {
    if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return std::nullopt;
    const auto hex = [](char h) { return h >= '0' && h <= '9' ? h - '0' : h >= 'A' && h <= 'F' ? h - 'A' + 10 : h >= 'a' && h <= 'f' ? h - 'a' + 10 : -1; };
    const int high = hex(t[3]), low = hex(t[4]);
    if (high < 0 || low < 0) return std::nullopt;
    return high * 16 + low;
  }
};

class FuseDecoder : public Decoder {
 public:
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    return {all};
  }
};

// Up to `start` leading and `stop` trailing `content` characters off every token.
class StripDecoder : public Decoder {
 public:
  explicit StripDecoder(const ComponentJson& c)
      : start_(static_cast<std::size_t>(c.int_or("start", 0))), stop_(static_cast<std::size_t>(c.int_or("stop", 0))) {
    const auto content = c.require_string("content");
    std::size_t i = 0;
    content_ = content.empty() ? U' ' : next_code_point(content, i);
  }
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (auto& t : tokens) {
      std::vector<char32_t> chars;
      for (std::size_t i = 0; i < t.size();) chars.push_back(next_code_point(t, i));
      std::size_t begin = 0, end = chars.size();
      while (begin < start_ && begin < end && chars[begin] == content_) ++begin;
      for (std::size_t n = 0; n < stop_ && end > begin && chars[end - 1] == content_; ++n) --end;
      std::string out;
      for (std::size_t k = begin; k < end; ++k) append_utf8(out, chars[k]);
      t = std::move(out);
    }
    return tokens;
  }

 private:
  std::size_t start_, stop_;
  char32_t content_;
};

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(const ComponentJson& c) {
    for (std::size_t i = 0; i < c.array_size("decoders"); ++i)
      if (auto d = make_decoder(c.child("decoders", i))) steps_.push_back(std::move(d));
  }
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (const auto& step : steps_) tokens = step->decode_chain(std::move(tokens));
    return tokens;
  }

 private:
  std::vector<std::unique_ptr<Decoder>> steps_;
};

}  // namespace

std::unique_ptr<Decoder> make_decoder(const ComponentJson& c) {
  const auto& type = c.type();
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "Metaspace") return std::make_unique<MetaspaceDecoder>(c);
  if (type == "WordPiece") return std::make_unique<WordPieceDecoder>(c);
  if (type == "Replace") return std::make_unique<ReplaceDecoder>(c);
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip") return std::make_unique<StripDecoder>(c);
  if (type == "Sequence") return std::make_unique<SequenceDecoder>(c);
  c.unsupported();
}

}  // namespace mpitrain::tokenizers
