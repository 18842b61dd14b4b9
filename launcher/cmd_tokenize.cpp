// `mpitrain tokenize TOKENIZER_DIR --input F.jsonl --output F.jsonl`: a tokenizer.json run on JSON lines, encoding or decoding, the parity tool for tokenizers as `logits` is for models.
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "launcher/options.h"
#include "runtime/checkpoint/atomic_file.h"
#include "runtime/checkpoint/input_file.h"
#include "src/tokenizers/tokenizer.h"

namespace mpitrain::launcher {

namespace {

using nlohmann::json;

// One output line for one input line; throws std::runtime_error naming `where` ("F.jsonl:3").
std::string encode_line(const tokenizers::Tokenizer& tokenizer, const json& line, const std::string& where,
                        bool add_special_tokens) {
  if (!line.is_object() || !line.contains("text") || !line["text"].is_string())
    throw std::runtime_error(where + ": needs \"text\" (a string)");
  const auto text = line["text"].get<std::string>();
  tokenizers::Encoding encoding;
  if (line.contains("text_pair")) {
    if (!line["text_pair"].is_string()) throw std::runtime_error(where + ": \"text_pair\" must be a string");
    encoding = tokenizer.encode_pair(text, line["text_pair"].get<std::string>(), add_special_tokens);
  } else {
    encoding = tokenizer.encode(text, add_special_tokens);
  }
  return json{{"ids", encoding.ids}, {"type_ids", encoding.type_ids}}.dump();
}

std::string decode_line(const tokenizers::Tokenizer& tokenizer, const json& line, const std::string& where,
                        bool skip_special_tokens) {
  if (!line.is_object() || !line.contains("ids") || !line["ids"].is_array())
    throw std::runtime_error(where + ": needs \"ids\" (an array of integers)");
  std::vector<int> ids;
  for (const auto& id : line["ids"]) {
    if (!id.is_number_integer() || id.get<std::int64_t>() < 0 || id.get<std::int64_t>() >= tokenizer.vocab_size())
      throw std::runtime_error(where + ": id " + id.dump() + " is not in the vocabulary (0.." +
                               std::to_string(tokenizer.vocab_size() - 1) + ")");
    ids.push_back(id.get<int>());
  }
  // Invalid UTF-8 cannot come out: the decoders replace it by U+FFFD, as the library does.
  return json{{"text", tokenizer.decode(ids, skip_special_tokens)}}.dump();
}

}  // namespace

int run_tokenize(const Args& args) {
  po::options_description options("tokenize options");
  std::string tokenizer_path, input, output;
  bool add_special_tokens = true, decode = false, skip_special_tokens = true;
  options.add_options()("tokenizer", po::value(&tokenizer_path)->required(), "a directory with tokenizer.json, or the file")(
      "input", po::value(&input)->required(), "JSON lines: {\"text\": ..., \"text_pair\": ...} (or {\"ids\": [...]} with --decode)")(
      "output", po::value(&output)->required(), "JSON lines: {\"ids\": [...], \"type_ids\": [...]} (or {\"text\": ...})")(
      "add_special_tokens", po::value<bool>(&add_special_tokens)->default_value(true), "as the post-processor says")(
      "decode", po::bool_switch(&decode), "ids to text instead")(
      "skip_special_tokens", po::value<bool>(&skip_special_tokens)->default_value(true), "when decoding");
  po::positional_options_description positional;
  positional.add("tokenizer", 1);
  po::variables_map values;
  if (!parse_options("tokenize", "TOKENIZER_DIR --input F.jsonl --output F.jsonl", args, options, positional, values))
    return 0;
  const auto tokenizer = tokenizers::Tokenizer::from_path(tokenizer_path);
  checkpoint::require_regular_file(input);
  std::ifstream in(input);
  std::string line, written;
  std::size_t number = 0, count = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty()) continue;
    const auto where = input + ":" + std::to_string(number);
    const auto parsed = checkpoint::parse_json(line, where);
    written += (decode ? decode_line(tokenizer, parsed, where, skip_special_tokens)
                       : encode_line(tokenizer, parsed, where, add_special_tokens)) +
               "\n";
    ++count;
  }
  // Whole or not at all: a bad line leaves an earlier output as it was.
  checkpoint::write_file_atomically(output, written);
  std::cerr << (decode ? "decoded " : "encoded ") << count << " line(s) into " << output << "\n";
  return 0;
}

}  // namespace mpitrain::launcher
