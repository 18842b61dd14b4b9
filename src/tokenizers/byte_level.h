// GPT-2's byte-level alphabet: each of the 256 bytes as a printable character, and back.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mpitrain::tokenizers {

// The UTF-8 text of `bytes`, each byte replaced by its character of the alphabet.
std::string bytes_to_alphabet(std::string_view bytes);
// The byte a character of the alphabet stands for; nullopt for any other character.
std::optional<std::uint8_t> alphabet_byte(char32_t c);

}  // namespace mpitrain::tokenizers
