// A model's vocabulary: token <-> id, checked as it is read (ids unique and non-negative, no token twice).
#include <limits>

#include "src/tokenizers/models.h"

namespace mpitrain::tokenizers {

Vocabulary Vocabulary::from_json(const ComponentJson& c, const char* key) {
  const auto it = c.json().find(key);
  if (it == c.json().end() || !it->is_object()) c.fail(std::string("'") + key + "' must be an object {token: id}");
  Vocabulary v;
  v.ids_.reserve(it->size());
  for (const auto& [token, id] : it->items()) {
    if (!id.is_number_integer() || id.get<std::int64_t>() < 0 || id.get<std::int64_t>() > std::numeric_limits<int>::max())
      c.fail("token '" + token + "' has id " + id.dump() + ", not a non-negative integer");
    const int value = id.get<int>();
    if (static_cast<std::size_t>(value) >= v.tokens_.size()) v.tokens_.resize(static_cast<std::size_t>(value) + 1);
    if (!v.tokens_[value].empty()) c.fail("id " + std::to_string(value) + " is given to both '" + v.tokens_[value] + "' and '" + token + "'");
    v.tokens_[value] = token;
    v.ids_.emplace(token, value);
  }
  return v;
}

std::optional<int> Vocabulary::id(const std::string& token) const {
  const auto it = ids_.find(token);
  if (it == ids_.end()) return std::nullopt;
  return it->second;
}

const std::string* Vocabulary::token(int id) const {
  if (id < 0 || static_cast<std::size_t>(id) >= tokens_.size() || tokens_[id].empty()) return nullptr;
  return &tokens_[id];
}

}  // namespace mpitrain::tokenizers
