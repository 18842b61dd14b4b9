// The safetensors header: parsing with full validation, and building one with every offset known up front.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/checkpoint/dtype.h"

namespace mpitrain::checkpoint {

inline constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;  // the format's limit

struct TensorEntry {
  std::string name;
  DType dtype = DType::F32;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0;  // data_offsets, relative to the byte buffer after the header
  std::uint64_t end = 0;

  std::uint64_t nbytes() const { return end - begin; }
  std::int64_t numel() const;
};

struct SafetensorsHeader {
  std::vector<TensorEntry> tensors;  // in byte-buffer order
  std::map<std::string, std::string> metadata;
  std::uint64_t data_start = 0;  // absolute file offset of the byte buffer

  const TensorEntry* find(std::string_view name) const;
};

// Validates a whole file's framing given its first bytes and total size: the 8-byte length,
// the JSON header and every entry against the byte buffer that follows. `prefix` must hold
// at least min(file_size, 8 + header length) bytes. Throws CheckpointError naming `source`.
SafetensorsHeader parse_safetensors(const std::uint8_t* prefix, std::size_t prefix_size,
                                    std::uint64_t file_size, const std::string& source);

// Parses just the JSON header text against a byte buffer of `buffer_size` bytes.
SafetensorsHeader parse_safetensors_header_json(std::string_view json, std::uint64_t buffer_size,
                                                const std::string& source);

// What a tensor to be written looks like before its bytes exist.
struct TensorSpec {
  std::string name;
  DType dtype = DType::F32;
  std::vector<std::int64_t> shape;
};

std::uint64_t spec_nbytes(const TensorSpec& spec);

// "[2,3]", the compact form error messages use for shapes.
std::string shape_to_string(const std::vector<std::int64_t>& shape);

// The full plan of one file: the bytes that precede the data (length + padded header) and
// each tensor's position. Tensors are ordered as the reference writer orders them
// (dtype descending, then name), so equal inputs give byte-identical files.
struct SafetensorsPlan {
  std::string preamble;              // 8-byte little-endian length + header JSON + padding
  std::vector<TensorEntry> tensors;  // file order, offsets relative to the byte buffer
  std::uint64_t file_size = 0;

  std::uint64_t data_start() const { return preamble.size(); }
};

SafetensorsPlan plan_safetensors(std::vector<TensorSpec> specs,
                                 const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

}  // namespace mpitrain::checkpoint
