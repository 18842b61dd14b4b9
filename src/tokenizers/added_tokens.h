// Added tokens (special and not): split out of a text before and after normalization, leftmost-longest, with lstrip / rstrip / single_word as the tokenizers library applies them.
#pragma once

#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "src/tokenizers/component_json.h"
#include "src/tokenizers/normalizers.h"
#include "src/tokenizers/split_text.h"

namespace mpitrain::tokenizers {

struct AddedToken {
  int id = 0;
  std::string content;
  bool single_word = false, lstrip = false, rstrip = false, normalized = true, special = false;
};

class AddedTokens {
 public:
  // The "added_tokens" array of `file`; the normalizer makes a normalized token's pattern.
  AddedTokens(const nlohmann::json& added, const std::string& file, const Normalizer* normalizer);

  // `text` in splits: added tokens not normalized are found in the raw text; the rest is
  // normalized, and normalized added tokens are found in it.
  std::vector<Split> split(const std::string& text, const Normalizer* normalizer) const;

  const AddedToken* by_id(int id) const;
  const AddedToken* by_content(const std::string& content) const;
  bool is_special(const std::string& content) const { return special_.count(content) != 0; }
  const std::vector<AddedToken>& all() const { return tokens_; }

 private:
  // The patterns of one pass, indexed by first byte, longest first (leftmost-longest search).
  struct Matcher {
    std::vector<std::vector<std::pair<std::string, const AddedToken*>>> by_first_byte =
        std::vector<std::vector<std::pair<std::string, const AddedToken*>>>(256);
    bool empty = true;
    void add(std::string pattern, const AddedToken* token);
    void finish();
  };
  std::vector<Split> find(const std::string& text, const Matcher& matcher, bool at_text_start) const;

  std::vector<AddedToken> tokens_;
  std::unordered_map<int, std::size_t> index_by_id_;
  std::unordered_map<std::string, std::size_t> index_by_content_;
  std::unordered_set<std::string> special_;
  Matcher raw_, normalized_;
};

}  // namespace mpitrain::tokenizers
