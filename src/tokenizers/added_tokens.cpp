// Added tokens (special and not): split out of a text before and after normalization, leftmost-longest, with lstrip / rstrip / single_word as the tokenizers library applies them.
#include "src/tokenizers/added_tokens.h"

#include <algorithm>

#include "src/tokenizers/unicode_text.h"

namespace mpitrain::tokenizers {

namespace {

// The last character of text[0, end) and the first of text[begin, ...).
char32_t char_before(const std::string& text, std::size_t end) {
  std::size_t start = end - 1;
  while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
  return next_code_point(text, start);
}
char32_t char_at(const std::string& text, std::size_t begin) { return next_code_point(text, begin); }

// Where the whitespace run ending at `end` begins / the one starting at `begin` ends.
std::size_t whitespace_start_before(const std::string& text, std::size_t end) {
  while (end > 0) {
    std::size_t start = end - 1;
    while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
    std::size_t i = start;
    if (!is_whitespace(next_code_point(text, i))) break;
    end = start;
  }
  return end;
}
std::size_t whitespace_end_after(const std::string& text, std::size_t begin) {
  for (std::size_t i = begin; i < text.size();) {
    if (!is_whitespace(next_code_point(text, i))) break;
    begin = i;
  }
  return begin;
}

}  // namespace

void AddedTokens::Matcher::add(std::string pattern, const AddedToken* token) {
  if (pattern.empty()) return;
  by_first_byte[static_cast<unsigned char>(pattern[0])].emplace_back(std::move(pattern), token);
  empty = false;
}

void AddedTokens::Matcher::finish() {
  for (auto& list : by_first_byte)
    std::stable_sort(list.begin(), list.end(), [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
}

AddedTokens::AddedTokens(const nlohmann::json& added, const std::string& file, const Normalizer* normalizer) {
  if (added.is_null()) return;
  if (!added.is_array()) throw TokenizerError(file + ": added_tokens must be an array");
  for (std::size_t i = 0; i < added.size(); ++i) {
    const ComponentJson c(added[i], file, "added_tokens[" + std::to_string(i) + "]");
    AddedToken t;
    t.id = static_cast<int>(c.int_or("id", -1));
    if (t.id < 0) c.fail("'id' must be a non-negative integer");
    t.content = c.require_string("content");
    t.special = c.bool_or("special", false);
    t.single_word = c.bool_or("single_word", false);
    t.lstrip = c.bool_or("lstrip", false);
    t.rstrip = c.bool_or("rstrip", false);
    t.normalized = c.bool_or("normalized", !t.special);
    if (index_by_id_.count(t.id)) c.fail("id " + std::to_string(t.id) + " is given to two added tokens");
    index_by_id_[t.id] = tokens_.size();
    index_by_content_[t.content] = tokens_.size();
    if (t.special) special_.insert(t.content);
    tokens_.push_back(std::move(t));
  }
  for (const auto& t : tokens_) {
    if (t.normalized) normalized_.add(normalizer ? normalizer->normalize(t.content) : t.content, &t);
    else raw_.add(t.content, &t);
  }
  raw_.finish();
  normalized_.finish();
}

const AddedToken* AddedTokens::by_id(int id) const {
  const auto it = index_by_id_.find(id);
  return it == index_by_id_.end() ? nullptr : &tokens_[it->second];
}

const AddedToken* AddedTokens::by_content(const std::string& content) const {
  const auto it = index_by_content_.find(content);
  return it == index_by_content_.end() ? nullptr : &tokens_[it->second];
}

std::vector<Split> AddedTokens::find(const std::string& text, const Matcher& matcher, bool at_text_start) const {
  std::vector<Split> out;
  if (matcher.empty) {
    out.push_back({text, std::nullopt, at_text_start});
    return out;
  }
  std::size_t done = 0;  // text[0, done) is in `out`
  const auto text_piece = [&](std::size_t begin, std::size_t end) {
    if (end > begin) out.push_back({text.substr(begin, end - begin), std::nullopt, at_text_start && begin == 0});
  };
  for (std::size_t at = 0; at < text.size();) {
    const AddedToken* token = nullptr;
    std::size_t length = 0;
    for (const auto& [pattern, candidate] : matcher.by_first_byte[static_cast<unsigned char>(text[at])])
      if (text.compare(at, pattern.size(), pattern) == 0) {
        token = candidate;
        length = pattern.size();
        break;  // longest first
      }
    if (!token) {
      ++at;
      continue;
    }
    std::size_t start = at, stop = at + length;
    // single_word: only where no word character touches it on either side.
    if (token->single_word && ((start > 0 && is_word_character(char_before(text, start))) ||
                               (stop < text.size() && is_word_character(char_at(text, stop))))) {
      at = stop;  // the next search starts after this match, as the library's iterator does
      continue;
    }
    if (token->lstrip) start = std::max(whitespace_start_before(text, start), done);
    if (token->rstrip) stop = whitespace_end_after(text, stop);
    text_piece(done, start);
    out.push_back({text.substr(start, stop - start), token->id, false});
    done = stop;
    at = stop;
  }
  text_piece(done, text.size());
  return out;
}

std::vector<Split> AddedTokens::split(const std::string& text, const Normalizer* normalizer) const {
  std::vector<Split> out;
  for (auto& piece : find(text, raw_, true)) {
    if (piece.token) {
      out.push_back(std::move(piece));
      continue;
    }
    const std::string normalized = normalizer ? normalizer->normalize(piece.text) : piece.text;
    for (auto& inner : find(normalized, normalized_, piece.at_text_start))
      if (!inner.text.empty()) out.push_back(std::move(inner));
  }
  return out;
}

}  // namespace mpitrain::tokenizers
