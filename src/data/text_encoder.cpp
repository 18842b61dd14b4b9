// What data preparation asks of a tokenizer (a document's ids in a token stream, a classification row, the pad id), from a Hugging Face tokenizer directory or the built-in byte tokenizer.
#include "src/data/text_encoder.h"

#include <algorithm>
#include <filesystem>
#include <optional>
#include <stdexcept>

#include "runtime/checkpoint/json_file.h"
#include "src/data/byte_tokenizer.h"
#include "src/data/preparation_record.h"
#include "src/tokenizers/tokenizer.h"

namespace mpitrain::data {

namespace fs = std::filesystem;

namespace {

class BytesEncoder : public TextEncoder {
 public:
  std::vector<std::int32_t> document(const std::string& text) const override {
    auto ids = tokenizer_.encode(text);
    ids.push_back(ByteTokenizer::kEos);
    return ids;
  }
  Row row(const std::string& text, const std::string* pair, std::int64_t max_length) const override {
    if (pair)
      throw std::runtime_error("a sentence pair (\"text_pair\") needs a Hugging Face tokenizer "
                               "(data.tokenizer_name_or_path): the byte tokenizer has no separator or type ids");
    Row r;
    r.ids = tokenizer_.encode(text);
    r.ids.insert(r.ids.begin(), ByteTokenizer::kBos);  // the [CLS]-like first token the pooler reads
    if (static_cast<std::int64_t>(r.ids.size()) > max_length) r.ids.resize(static_cast<std::size_t>(max_length));
    r.type_ids.assign(r.ids.size(), 0);
    return r;
  }
  std::vector<std::int32_t> prompt(const std::string& text) const override { return tokenizer_.encode(text); }
  std::vector<std::int32_t> completion(const std::string& text) const override { return document(text); }
  std::int32_t pad_id() const override { return ByteTokenizer::kPad; }
  std::int32_t eos_id() const override { return ByteTokenizer::kEos; }
  std::string decode(const std::vector<std::int32_t>& ids) const override {
    return tokenizer_.decode(std::vector<std::int64_t>(ids.begin(), ids.end()));
  }
  std::int64_t vocab_size() const override { return ByteTokenizer::kVocabSize; }
  nlohmann::json identity() const override { return "bytes"; }

 private:
  ByteTokenizer tokenizer_;
};

// "eos_token" as tokenizer_config.json or special_tokens_map.json give it: a string, or
// {"content": ...}; "" where neither names one.
std::string special_token(const std::string& dir, const char* key) {
  for (const char* file : {"tokenizer_config.json", "special_tokens_map.json"}) {
    const auto path = (fs::path(dir) / file).string();
    if (!fs::exists(path)) continue;
    const auto config = checkpoint::read_json_file(path);
    if (!config.is_object() || !config.contains(key)) continue;
    const auto& value = config[key];
    if (value.is_string()) return value.get<std::string>();
    if (value.is_object() && value.contains("content") && value["content"].is_string())
      return value["content"].get<std::string>();
  }
  return "";
}

void keep_first(tokenizers::Encoding& e, std::size_t n) {
  if (e.ids.size() <= n) return;
  e.ids.resize(n);
  e.type_ids.resize(n);
}

// HF's longest_first: the shorter text keeps what it can up to half of `room`, the longer the
// rest; where both are long, half each (the second gets the odd one).
void cut_longest_first(tokenizers::Encoding& first, std::optional<tokenizers::Encoding>& second, std::size_t room) {
  if (!second) return keep_first(first, room);
  std::size_t n1 = first.ids.size(), n2 = second->ids.size();
  if (n1 + n2 <= room) return;
  const bool swapped = n1 > n2;
  if (swapped) std::swap(n1, n2);
  n2 = n1 > room ? n1 : std::max(n1, room - n1);
  if (n1 + n2 > room) {
    n1 = room / 2;
    n2 = n1 + room % 2;
  }
  if (swapped) std::swap(n1, n2);
  keep_first(first, n1);
  keep_first(*second, n2);
}

class HfEncoder : public TextEncoder {
 public:
  explicit HfEncoder(const std::string& dir)
      : dir_(dir), tokenizer_(tokenizers::Tokenizer::from_path(dir)) {
    const auto id_of = [&](const std::string& token, const char* key) -> std::int32_t {
      if (token.empty()) return -1;
      const auto id = tokenizer_.token_to_id(token);
      if (!id) throw tokenizers::TokenizerError(dir + ": its " + key + " '" + token + "' is not in tokenizer.json");
      return *id;
    };
    eos_ = id_of(special_token(dir, "eos_token"), "eos_token");
    pad_ = id_of(special_token(dir, "pad_token"), "pad_token");
    if (pad_ < 0) pad_ = eos_ >= 0 ? eos_ : 0;  // padded positions are masked out: any id will do
    specials_ = static_cast<std::int64_t>(tokenizer_.encode("", true).ids.size());
    // What the post-processor puts before a text: where a one-token stand-in lands in it.
    const auto around = tokenizer_.post_process({{-1}, {0}}, std::nullopt).ids;
    for (std::size_t i = 0; i < around.size() && around[i] != -1; ++i) leading_specials_.push_back(around[i]);
    pair_specials_ = static_cast<std::int64_t>(tokenizer_.encode_pair("", "", true).ids.size());
  }

  std::vector<std::int32_t> document(const std::string& text) const override {
    const auto ids = tokenizer_.encode(text, true).ids;
    std::vector<std::int32_t> out(ids.begin(), ids.end());
    if (eos_ >= 0 && (out.empty() || out.back() != eos_)) out.push_back(eos_);
    return out;
  }

  Row row(const std::string& text, const std::string* pair, std::int64_t max_length) const override {
    // The texts are cut before the special tokens go around them, so those are never cut off.
    auto first = tokenizer_.encode(text, false);
    std::optional<tokenizers::Encoding> second;
    if (pair) second = tokenizer_.encode(*pair, false);
    const std::size_t room =
        static_cast<std::size_t>(std::max<std::int64_t>(max_length - (pair ? pair_specials_ : specials_), 0));
    cut_longest_first(first, second, room);
    const auto joined = tokenizer_.post_process(std::move(first), std::move(second));
    Row r;
    r.ids.assign(joined.ids.begin(), joined.ids.end());
    r.type_ids.assign(joined.type_ids.begin(), joined.type_ids.end());
    if (static_cast<std::int64_t>(r.ids.size()) > max_length) {
      r.ids.resize(static_cast<std::size_t>(max_length));
      r.type_ids.resize(static_cast<std::size_t>(max_length));
    }
    return r;
  }

  std::vector<std::int32_t> prompt(const std::string& text) const override {
    // Only the special tokens that come before the text (a BOS); one after it (an EOS, a
    // [SEP]) would stand between the prompt and its completion.
    const auto ids = tokenizer_.encode(text, false).ids;
    std::vector<std::int32_t> out(leading_specials_);
    out.insert(out.end(), ids.begin(), ids.end());
    return out;
  }
  std::vector<std::int32_t> completion(const std::string& text) const override {
    const auto ids = tokenizer_.encode(text, false).ids;
    std::vector<std::int32_t> out(ids.begin(), ids.end());
    if (eos_ >= 0) out.push_back(eos_);
    return out;
  }
  std::int32_t pad_id() const override { return pad_; }
  std::int32_t eos_id() const override { return eos_; }
  std::string decode(const std::vector<std::int32_t>& ids) const override {
    return tokenizer_.decode(std::vector<int>(ids.begin(), ids.end()), /*skip_special_tokens=*/true);
  }
  std::int64_t vocab_size() const override { return tokenizer_.vocab_size(); }
  nlohmann::json identity() const override {
    // The tokenizer's files, with sizes and times as the preparation record lists sources.
    nlohmann::json files = nlohmann::json::array();
    for (const char* name : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"})
      if (const auto path = fs::path(dir_) / name; fs::exists(path))
        files.push_back(preparation_record(path.string(), nlohmann::json::object())["files"][0]);
    return files;
  }

 private:
  std::string dir_;
  tokenizers::Tokenizer tokenizer_;
  std::int32_t eos_ = -1, pad_ = -1;
  std::int64_t specials_ = 0, pair_specials_ = 0;
  std::vector<std::int32_t> leading_specials_;  // a BOS, a [CLS]: the post-processor's before a text
};

}  // namespace

std::unique_ptr<TextEncoder> byte_encoder() { return std::make_unique<BytesEncoder>(); }

std::unique_ptr<TextEncoder> tokenizer_encoder(const std::string& dir) { return std::make_unique<HfEncoder>(dir); }

}  // namespace mpitrain::data
