// XXH64 (the xxHash 64-bit algorithm, written from its specification): the checksum recorded for every checkpoint file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace mpitrain::checkpoint {

// Streaming XXH64: update() any number of times, then digest(). Same result as one call over
// the concatenated bytes.
class Xxh64 {
 public:
  explicit Xxh64(std::uint64_t seed = 0);
  void update(const void* data, std::size_t length);
  std::uint64_t digest() const;

 private:
  std::uint64_t seed_, v_[4], total_ = 0;
  unsigned char buffer_[32];
  std::size_t buffered_ = 0;
};

std::uint64_t xxh64(const void* data, std::size_t length, std::uint64_t seed = 0);
// A digest as the 16 hex digits markers and names record.
std::string xxh64_hex(std::uint64_t digest);
// The XXH64 of a file's bytes as 16 hex digits; throws CheckpointError naming the file.
std::string file_xxh64(const std::string& path);

}  // namespace mpitrain::checkpoint
