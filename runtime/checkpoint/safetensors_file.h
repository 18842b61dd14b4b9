// A memory-mapped (or in-memory), validated safetensors file: whole tensors or rectangular slices, read on demand.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/checkpoint/safetensors_header.h"

namespace mpitrain::checkpoint {

class SafetensorsFile {
 public:
  // Maps the file and validates its header against its size; throws CheckpointError.
  explicit SafetensorsFile(std::string path);
  // A file's bytes held in memory (another format converted on reading); `path` names it in
  // errors. Validated as a mapped file is.
  SafetensorsFile(std::string path, std::vector<std::uint8_t> bytes);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const SafetensorsHeader& header() const { return header_; }
  std::uint64_t file_size() const { return file_size_; }

  // Throws naming the file and tensor when absent.
  const TensorEntry& entry(const std::string& name) const;
  // The tensor's bytes inside the mapping; only the pages touched are read from disk.
  const std::uint8_t* data(const TensorEntry& entry) const;

  // Copies the whole tensor into dst with one positioned read (the kernel's readahead
  // serves it better than page faults on the mapping).
  void read_into(const TensorEntry& entry, void* dst) const;

  // Copies the block [offsets, offsets + sizes) of a row-major tensor into dst (row-major,
  // densely packed). Reads only the pages that hold the block.
  void read_slice(const TensorEntry& entry, const std::vector<std::int64_t>& offsets,
                  const std::vector<std::int64_t>& sizes, void* dst) const;

 private:
  std::string path_;
  std::uint64_t file_size_ = 0;
  int fd_ = -1;
  const std::uint8_t* mapping_ = nullptr;
  std::vector<std::uint8_t> memory_;  // the bytes of an in-memory file (fd_ < 0)
  SafetensorsHeader header_;
};

// Copies a rectangular block out of a dense row-major array; shared by the file reader and
// the in-memory layouts. Contiguous trailing dimensions are copied as one run.
void copy_block(const std::uint8_t* src, const std::vector<std::int64_t>& shape, std::size_t elem_size,
                const std::vector<std::int64_t>& offsets, const std::vector<std::int64_t>& sizes, std::uint8_t* dst);

}  // namespace mpitrain::checkpoint
