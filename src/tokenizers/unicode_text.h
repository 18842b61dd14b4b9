// Unicode for the tokenizers, from ICU: UTF-8 code points, the character classes Hugging Face's pipeline tests, normalization forms and per-character lowercase.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace mpitrain::tokenizers {

// The code point starting at byte `i` of `text` (advancing `i` past it); an invalid sequence
// reads as U+FFFD and advances one byte.
char32_t next_code_point(std::string_view text, std::size_t& i);
void append_utf8(std::string& out, char32_t c);
std::size_t code_point_count(std::string_view text);

// As Rust's char methods, which the tokenizers library calls: White_Space; general category P*;
// Other (Cc, Cf, Cs, Co, Cn); Mn; alphanumeric; `\w` (alphanumeric, marks, Pc, Join_Control).
bool is_whitespace(char32_t c);
bool is_punctuation(char32_t c);
bool is_other(char32_t c);
bool is_nonspacing_mark(char32_t c);
bool is_mark(char32_t c);  // general category M* (Mn, Mc, Me)
bool is_numeric(char32_t c);  // general category N* (Nd, Nl, No), as Rust's char::is_numeric
bool is_ascii_punctuation(char32_t c);
bool is_word_character(char32_t c);

enum class NormalizationForm { kNfc, kNfd, kNfkc, kNfkd };
std::string normalize(std::string_view text, NormalizationForm form);
// Each character lowercased on its own (full mappings, no context: Σ is σ anywhere), as the
// tokenizers library's Lowercase does.
std::string lowercase(std::string_view text);

}  // namespace mpitrain::tokenizers
