// Files this program reads, opened safely: only regular files (a FIFO would block open() forever, a device never end), and JSON parsed with bounded nesting (nlohmann's parser and destructor recurse).
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>

namespace mpitrain::checkpoint {

// JSON nested deeper than this is refused: no config, index, marker, tokenizer or data line
// this program reads comes near it, and 100,000 levels overflowed the stack.
inline constexpr std::size_t kMaxJsonDepth = 512;

// Throws CheckpointError naming `path` unless it is a regular file (after following links).
void require_regular_file(const std::string& path);
// A read-only descriptor of the regular file `path` (opened without blocking, checked with
// fstat, so a FIFO or device put in its place is one error, not a hang). Throws CheckpointError.
int open_regular_file(const std::string& path);
// The whole of the regular file `path`.
std::string read_regular_file(const std::string& path);

// `text` parsed, after a scan that refuses nesting deeper than kMaxJsonDepth; parse errors
// and the depth are CheckpointErrors naming `source` (a file, "command line", ...).
nlohmann::json parse_json(const std::string& text, const std::string& source);
// Throws CheckpointError naming `source` where `text` nests deeper than kMaxJsonDepth.
void check_json_depth(const std::string& text, const std::string& source);

}  // namespace mpitrain::checkpoint
