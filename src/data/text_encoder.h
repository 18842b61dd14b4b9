// What data preparation asks of a tokenizer (a document's ids in a token stream, a classification row, the pad id), from a Hugging Face tokenizer directory or the built-in byte tokenizer.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace mpitrain::data {

class TextEncoder {
 public:
  virtual ~TextEncoder() = default;
  // A causal-LM document as it joins the token stream: the special tokens the tokenizer's
  // post-processor adds (BOS where it adds one), then its EOS unless that is already last.
  virtual std::vector<std::int32_t> document(const std::string& text) const = 0;
  struct Row {
    std::vector<std::int32_t> ids, type_ids;
  };
  // A classification row (one text, or a sentence pair when `pair` is given) with its special
  // tokens, cut to `max_length` tokens as HF's longest_first truncation cuts: the texts lose
  // their ends, the special tokens stay. Type ids: 0 for the first text, 1 for the pair.
  virtual Row row(const std::string& text, const std::string* pair, std::int64_t max_length) const = 0;
  // Supervised fine-tuning: a prompt with the special tokens the tokenizer puts first (a BOS),
  // and a completion, then EOS.
  virtual std::vector<std::int32_t> prompt(const std::string& text) const = 0;
  virtual std::vector<std::int32_t> completion(const std::string& text) const = 0;
  virtual std::int32_t pad_id() const = 0;
  virtual std::int32_t eos_id() const = 0;  // -1 where the tokenizer names none
  // Text of `ids`, special tokens skipped (what `generate` prints).
  virtual std::string decode(const std::vector<std::int32_t>& ids) const = 0;
  virtual std::int64_t vocab_size() const = 0;
  // What a preparation record keeps to notice another tokenizer ("bytes", or the files' sizes and times).
  virtual nlohmann::json identity() const = 0;
};

std::unique_ptr<TextEncoder> byte_encoder();
// `dir` holds tokenizer.json (and tokenizer_config.json / special_tokens_map.json naming the eos
// and pad tokens). Throws tokenizers::TokenizerError (one line naming the file) otherwise.
std::unique_ptr<TextEncoder> tokenizer_encoder(const std::string& dir);

}  // namespace mpitrain::data
