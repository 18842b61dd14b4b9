// GPT-2's byte-level alphabet: each of the 256 bytes as a printable character, and back.
#include "src/tokenizers/byte_level.h"

#include <array>
#include <unordered_map>

#include "src/tokenizers/unicode_text.h"

namespace mpitrain::tokenizers {

namespace {

// Printable Latin-1 bytes stand for themselves; the others, in order, for U+0100 onwards.
struct Alphabet {
  std::array<std::string, 256> utf8;
  std::unordered_map<char32_t, std::uint8_t> byte_of;

  Alphabet() {
    const auto printable = [](int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); };
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const char32_t c = printable(b) ? static_cast<char32_t>(b) : next++;
      append_utf8(utf8[b], c);
      byte_of[c] = static_cast<std::uint8_t>(b);
    }
  }
};

const Alphabet& alphabet() {
  static const Alphabet instance;
  return instance;
}

}  // namespace

std::string bytes_to_alphabet(std::string_view bytes) {
  const auto& table = alphabet().utf8;
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const char b : bytes) out += table[static_cast<unsigned char>(b)];
  return out;
}

std::optional<std::uint8_t> alphabet_byte(char32_t c) {
  const auto& map = alphabet().byte_of;
  const auto it = map.find(c);
  if (it == map.end()) return std::nullopt;
  return it->second;
}

}  // namespace mpitrain::tokenizers
