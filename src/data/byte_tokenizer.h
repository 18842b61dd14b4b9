// The built-in byte-level tokenizer: ids 0-255 are bytes, then <s>, </s>, <pad>; saved as HF tokenizer files.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mpitrain::data {

class ByteTokenizer {
 public:
  static constexpr std::int32_t kBos = 256;
  static constexpr std::int32_t kEos = 257;
  static constexpr std::int32_t kPad = 258;
  static constexpr std::int32_t kVocabSize = 259;

  std::vector<std::int32_t> encode(std::string_view text) const;
  // Bytes back to text; special tokens are dropped.
  std::string decode(const std::vector<std::int64_t>& ids) const;

  // Writes tokenizer.json (a byte-level BPE with no merges, so each byte is one token),
  // tokenizer_config.json and special_tokens_map.json, which AutoTokenizer.from_pretrained
  // loads as a PreTrainedTokenizerFast.
  static void save(const std::string& dir, std::int64_t model_max_length);
};

}  // namespace mpitrain::data
