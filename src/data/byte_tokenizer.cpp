// The built-in byte-level tokenizer: ids 0-255 are bytes, then <s>, </s>, <pad>; saved as HF tokenizer files.
#include "src/data/byte_tokenizer.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "runtime/checkpoint/atomic_file.h"

namespace mpitrain::data {
namespace {

using nlohmann::json;

// GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to U+0100 onwards,
// so every byte is a visible character in the vocabulary.
std::string byte_symbol(int byte) {
  const bool printable = (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) || (byte >= 0xAE && byte <= 0xFF);
  int code = byte;
  if (!printable) {
    int shifted = 0;
    for (int b = 0; b < byte; ++b) {
      const bool p = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      if (!p) ++shifted;
    }
    code = 256 + shifted;
  }
  std::string utf8;
  if (code < 0x80) {
    utf8 += static_cast<char>(code);
  } else {
    utf8 += static_cast<char>(0xC0 | (code >> 6));
    utf8 += static_cast<char>(0x80 | (code & 0x3F));
  }
  return utf8;
}

json special(int id, const std::string& content) {
  return json{{"id", id},         {"content", content}, {"single_word", false}, {"lstrip", false},
              {"rstrip", false},  {"normalized", false}, {"special", true}};
}

}  // namespace

std::vector<std::int32_t> ByteTokenizer::encode(std::string_view text) const {
  std::vector<std::int32_t> ids;
  ids.reserve(text.size());
  for (unsigned char c : text) ids.push_back(c);
  return ids;
}

std::string ByteTokenizer::decode(const std::vector<std::int64_t>& ids) const {
  std::string text;
  for (auto id : ids)
    if (id >= 0 && id < 256) text += static_cast<char>(id);
  return text;
}

void ByteTokenizer::save(const std::string& dir, std::int64_t model_max_length) {
  std::filesystem::create_directories(dir);
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_symbol(b)] = b;
  vocab["<s>"] = kBos;
  vocab["</s>"] = kEos;
  vocab["<pad>"] = kPad;
  json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}};
  json tokenizer = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", {special(kBos, "<s>"), special(kEos, "</s>"), special(kPad, "<pad>")}},
      {"normalizer", nullptr},
      {"pre_tokenizer", byte_level},
      {"post_processor", nullptr},
      {"decoder", byte_level},
      {"model",
       {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false}, {"ignore_merges", false},
        {"vocab", vocab}, {"merges", json::array()}}}};
  json config = {{"tokenizer_class", "PreTrainedTokenizerFast"},
                 {"bos_token", "<s>"},
                 {"eos_token", "</s>"},
                 {"pad_token", "<pad>"},
                 {"model_max_length", model_max_length},
                 {"clean_up_tokenization_spaces", false}};
  json special_map = {{"bos_token", "<s>"}, {"eos_token", "</s>"}, {"pad_token", "<pad>"}};
  const std::filesystem::path base(dir);
  checkpoint::write_file_atomically((base / "tokenizer.json").string(), tokenizer.dump(2) + "\n");
  checkpoint::write_file_atomically((base / "tokenizer_config.json").string(), config.dump(2) + "\n");
  checkpoint::write_file_atomically((base / "special_tokens_map.json").string(), special_map.dump(2) + "\n");
}

}  // namespace mpitrain::data
