// A PCRE2 regular expression (UTF, Unicode properties, JIT) and every match of it in a text: what the tokenizers' Split, Replace and ByteLevel patterns run on.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mpitrain::tokenizers {

class Regex {
 public:
  // Throws std::invalid_argument with PCRE2's message and the offset where the pattern fails.
  explicit Regex(const std::string& pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Byte ranges [begin, end) of the successive non-overlapping matches, left to right. Empty
  // matches are skipped (none of the patterns tokenizers ship can match empty).
  std::vector<std::pair<std::size_t, std::size_t>> find_all(std::string_view text) const;

 private:
  struct Compiled;
  std::unique_ptr<Compiled> compiled_;
};

}  // namespace mpitrain::tokenizers
