// Unicode for the tokenizers, from ICU: UTF-8 code points, the character classes Hugging Face's pipeline tests, normalization forms and per-character lowercase.
#include "src/tokenizers/unicode_text.h"

#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/bytestream.h>
#include <unicode/ustring.h>
#include <unicode/utf8.h>

#include <stdexcept>

namespace mpitrain::tokenizers {

char32_t next_code_point(std::string_view text, std::size_t& i) {
  const auto* bytes = reinterpret_cast<const std::uint8_t*>(text.data());
  const auto length = static_cast<std::int32_t>(text.size());
  auto offset = static_cast<std::int32_t>(i);
  UChar32 c = 0;
  U8_NEXT(bytes, offset, length, c);
  i = static_cast<std::size_t>(offset);
  return c < 0 ? U'\uFFFD' : static_cast<char32_t>(c);
}

void append_utf8(std::string& out, char32_t c) {
  std::uint8_t buffer[4];
  std::int32_t length = 0;
  UBool error = false;
  U8_APPEND(buffer, length, 4, static_cast<UChar32>(c), error);
  if (error) return;
  out.append(reinterpret_cast<const char*>(buffer), static_cast<std::size_t>(length));
}

std::size_t code_point_count(std::string_view text) {
  std::size_t count = 0;
  for (std::size_t i = 0; i < text.size(); ++count) next_code_point(text, i);
  return count;
}

bool is_whitespace(char32_t c) { return u_isUWhiteSpace(static_cast<UChar32>(c)); }

bool is_punctuation(char32_t c) { return u_ispunct(static_cast<UChar32>(c)); }

bool is_other(char32_t c) {
  switch (u_charType(static_cast<UChar32>(c))) {
    case U_CONTROL_CHAR:
    case U_FORMAT_CHAR:
    case U_SURROGATE:
    case U_PRIVATE_USE_CHAR:
    case U_UNASSIGNED: return true;
    default: return false;
  }
}

bool is_nonspacing_mark(char32_t c) { return u_charType(static_cast<UChar32>(c)) == U_NON_SPACING_MARK; }

bool is_mark(char32_t c) { return (U_GET_GC_MASK(static_cast<UChar32>(c)) & U_GC_M_MASK) != 0; }

bool is_numeric(char32_t c) { return (U_GET_GC_MASK(static_cast<UChar32>(c)) & U_GC_N_MASK) != 0; }

bool is_ascii_punctuation(char32_t c) {
  return (c >= U'!' && c <= U'/') || (c >= U':' && c <= U'@') || (c >= U'[' && c <= U'`') || (c >= U'{' && c <= U'~');
}

bool is_word_character(char32_t c) {
  const auto u = static_cast<UChar32>(c);
  // Rust regex's \w: Alphabetic, M*, Nd, Pc, Join_Control.
  if (u_hasBinaryProperty(u, UCHAR_ALPHABETIC) || u_hasBinaryProperty(u, UCHAR_JOIN_CONTROL)) return true;
  const auto mask = U_GET_GC_MASK(u);
  return (mask & (U_GC_M_MASK | U_GC_ND_MASK | U_GC_PC_MASK)) != 0;
}

std::string normalize(std::string_view text, NormalizationForm form) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* normalizer = nullptr;
  switch (form) {
    case NormalizationForm::kNfc: normalizer = icu::Normalizer2::getNFCInstance(status); break;
    case NormalizationForm::kNfd: normalizer = icu::Normalizer2::getNFDInstance(status); break;
    case NormalizationForm::kNfkc: normalizer = icu::Normalizer2::getNFKCInstance(status); break;
    case NormalizationForm::kNfkd: normalizer = icu::Normalizer2::getNFKDInstance(status); break;
  }
  if (U_FAILURE(status)) throw std::runtime_error(std::string("ICU normalizer: ") + u_errorName(status));
  // UTF-8 in and out (no UTF-16 copy); text already in the form (most of it, for NFC) is
  // returned as it is.
  const icu::StringPiece source(text.data(), static_cast<std::int32_t>(text.size()));
  if (normalizer->isNormalizedUTF8(source, status) && U_SUCCESS(status)) return std::string(text);
  status = U_ZERO_ERROR;
  std::string out;
  icu::StringByteSink<std::string> sink(&out, static_cast<std::int32_t>(text.size()));
  normalizer->normalizeUTF8(0, source, sink, nullptr, status);
  if (U_FAILURE(status)) throw std::runtime_error(std::string("ICU normalization: ") + u_errorName(status));
  return out;
}

std::string lowercase(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    const auto byte = static_cast<unsigned char>(text[i]);
    if (byte < 0x80) {  // ASCII: most text
      out += static_cast<char>(byte >= 'A' && byte <= 'Z' ? byte + 32 : byte);
      ++i;
      continue;
    }
    const char32_t c = next_code_point(text, i);
    UChar source[2];
    std::int32_t source_length = 0;
    U16_APPEND_UNSAFE(source, source_length, static_cast<UChar32>(c));
    UChar lowered[8];
    UErrorCode status = U_ZERO_ERROR;
    // The root locale, one character at a time: full mappings (İ is i + U+0307), no context.
    const auto length = u_strToLower(lowered, 8, source, source_length, "", &status);
    if (U_FAILURE(status)) {
      append_utf8(out, c);
      continue;
    }
    for (std::int32_t k = 0; k < length;) {
      UChar32 l;
      U16_NEXT(lowered, k, length, l);
      append_utf8(out, static_cast<char32_t>(l));
    }
  }
  return out;
}

}  // namespace mpitrain::tokenizers
