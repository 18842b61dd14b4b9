// A Hugging Face tokenizer read from tokenizer.json, in C++: encode (one text or a pair, with or without special tokens) and decode, id for id what the tokenizers library gives.
#include "src/tokenizers/tokenizer.h"

#include <algorithm>
#include <filesystem>

#include "runtime/checkpoint/input_file.h"

namespace mpitrain::tokenizers {

namespace {

// A component that may be null (none) or an object.
template <class Make>
auto optional_component(const nlohmann::json& json, const char* key, const std::string& file, Make make)
    -> decltype(make(std::declval<ComponentJson>())) {
  const auto it = json.find(key);
  if (it == json.end() || it->is_null()) return nullptr;
  return make(ComponentJson(*it, file, key));
}

}  // namespace

Tokenizer Tokenizer::from_file(const std::string& path) {
  nlohmann::json json;
  try {
    json = checkpoint::parse_json(checkpoint::read_regular_file(path), path);
  } catch (const std::exception& e) {
    throw TokenizerError(std::string(e.what()).substr(0, std::string(e.what()).find('\n')));
  }
  return from_json(json, path);
}

Tokenizer Tokenizer::from_path(const std::string& path) {
  if (!std::filesystem::is_directory(path)) return from_file(path);
  const auto file = (std::filesystem::path(path) / "tokenizer.json").string();
  if (!std::filesystem::exists(file))
    throw TokenizerError(path + ": no tokenizer.json (mpitrain reads the tokenizers library's file; a "
                                "tokenizer.model or vocab.txt alone is not enough)");
  return from_file(file);
}

Tokenizer Tokenizer::from_json(const nlohmann::json& json, const std::string& file) {
  if (!json.is_object()) throw TokenizerError(file + ": not a tokenizer.json (not a JSON object)");
  if (!json.contains("model")) throw TokenizerError(file + ": not a tokenizer.json (no 'model')");
  Tokenizer t;
  t.file_ = file;
  t.normalizer_ = optional_component(json, "normalizer", file, make_normalizer);
  t.pre_tokenizer_ = optional_component(json, "pre_tokenizer", file, make_pre_tokenizer);
  t.model_ = make_model(ComponentJson(json["model"], file, "model"));
  t.decoder_ = optional_component(json, "decoder", file, make_decoder);
  t.added_ = std::make_shared<const AddedTokens>(json.value("added_tokens", nlohmann::json::array()), file,
                                                 t.normalizer_.get());
  const auto token_id = [&t, &file](const std::string& token) {
    const auto id = t.token_to_id(token);
    if (!id) throw TokenizerError(file + ": post_processor: special token '" + token + "' is not in the vocabulary");
    return *id;
  };
  t.post_processor_ = optional_component(json, "post_processor", file, [&](const ComponentJson& c) {
    return make_post_processor(c, token_id);
  });
  return t;
}

Encoding Tokenizer::encode_sequence(const std::string& text, int type_id) const {
  Encoding out;
  auto splits = added_->split(text, normalizer_.get());
  if (pre_tokenizer_) pre_tokenizer_->pre_tokenize(splits);
  for (const auto& s : splits) {
    if (s.token) out.ids.push_back(*s.token);
    else model_->tokenize(s.text, out.ids);
  }
  out.type_ids.assign(out.ids.size(), type_id);
  return out;
}

Encoding Tokenizer::post_process(Encoding first, std::optional<Encoding> second) const {
  if (second) second->type_ids.assign(second->ids.size(), 1);
  if (!post_processor_) return join_plain(std::move(first), std::move(second));
  return post_processor_->process(std::move(first), std::move(second));
}

Encoding Tokenizer::encode(const std::string& text, bool add_special_tokens) const {
  auto first = encode_sequence(text, 0);
  return add_special_tokens ? post_process(std::move(first), std::nullopt) : first;
}

Encoding Tokenizer::encode_pair(const std::string& text, const std::string& pair, bool add_special_tokens) const {
  auto first = encode_sequence(text, 0);
  auto second = encode_sequence(pair, 1);
  if (!add_special_tokens) return join_plain(std::move(first), std::move(second));
  return post_process(std::move(first), std::move(second));
}

std::string Tokenizer::decode(const std::vector<int>& ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (const int id : ids) {
    if (const auto* added = added_->by_id(id)) {
      if (skip_special_tokens && added->special) continue;
      tokens.push_back(added->normalized && normalizer_ ? normalizer_->normalize(added->content) : added->content);
    } else if (const auto* token = model_->vocabulary().token(id)) {
      // A model token that is also a special added token's content counts as special.
      if (skip_special_tokens && added_->is_special(*token)) continue;
      tokens.push_back(*token);
    }
  }
  if (decoder_) return decoder_->decode(std::move(tokens));
  std::string text;
  for (std::size_t i = 0; i < tokens.size(); ++i) text += (i ? " " : "") + tokens[i];
  return text;
}

std::optional<int> Tokenizer::token_to_id(const std::string& token) const {
  if (const auto* added = added_->by_content(token)) return added->id;
  return model_->vocabulary().id(token);
}

std::optional<std::string> Tokenizer::id_to_token(int id) const {
  if (const auto* added = added_->by_id(id)) return added->content;
  if (const auto* token = model_->vocabulary().token(id)) return *token;
  return std::nullopt;
}

int Tokenizer::vocab_size() const {
  int largest = model_->vocabulary().max_id();
  for (const auto& t : added_->all()) largest = std::max(largest, t.id);
  return largest + 1;
}

}  // namespace mpitrain::tokenizers
