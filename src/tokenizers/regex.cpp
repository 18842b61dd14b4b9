// A PCRE2 regular expression (UTF, Unicode properties, JIT) and every match of it in a text: what the tokenizers' Split, Replace and ByteLevel patterns run on.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "src/tokenizers/regex.h"

#include <pcre2.h>

#include <stdexcept>

namespace mpitrain::tokenizers {

struct Regex::Compiled {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Compiled() { pcre2_code_free(code); }
};

Regex::Regex(const std::string& pattern) : compiled_(std::make_unique<Compiled>()) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  // UCP: \s, \w, \d and case folding by Unicode properties, as in Rust's and Oniguruma's engines.
  compiled_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                  PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &error, &offset, nullptr);
  if (!compiled_->code) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof message);
    throw std::invalid_argument("regex /" + pattern + "/: " + reinterpret_cast<const char*>(message) + " at offset " +
                                std::to_string(offset));
  }
  compiled_->jit = pcre2_jit_compile(compiled_->code, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() = default;

std::vector<std::pair<std::size_t, std::size_t>> Regex::find_all(std::string_view text) const {
  std::vector<std::pair<std::size_t, std::size_t>> matches;
  pcre2_match_data* data = pcre2_match_data_create_from_pattern(compiled_->code, nullptr);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  std::size_t start = 0;
  while (start <= text.size()) {
    // The text is valid UTF-8 (it came through a JSON parser); checking it again per match
    // would make the scan quadratic.
    const int found = compiled_->jit ? pcre2_jit_match(compiled_->code, subject, text.size(), start, PCRE2_NO_UTF_CHECK, data, nullptr)
                                     : pcre2_match(compiled_->code, subject, text.size(), start, PCRE2_NO_UTF_CHECK, data, nullptr);
    if (found < 0) break;
    const PCRE2_SIZE* range = pcre2_get_ovector_pointer(data);
    const std::size_t begin = range[0], end = range[1];
    if (end == begin) {
      // An empty match: move on by one character (a UTF-8 lead byte and its continuations).
      if (begin >= text.size()) break;
      start = begin + 1;
      while (start < text.size() && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) ++start;
      continue;
    }
    matches.emplace_back(begin, end);
    start = end;
  }
  pcre2_match_data_free(data);
  return matches;
}

}  // namespace mpitrain::tokenizers
