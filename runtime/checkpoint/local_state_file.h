// One rank's state as a safetensors file in node-local memory: laid out in a reused host buffer at the step boundary, then written through a read-write mapping in the background.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace mpitrain::checkpoint {

// A file of a fixed size, mapped read-write. Its space is reserved when it is created
// (posix_fallocate): a full tmpfs is a CheckpointError then, never a SIGBUS on a later store.
class MappedFile {
 public:
  static std::unique_ptr<MappedFile> create(const std::string& path, std::uint64_t size);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  std::uint64_t size() const { return size_; }
  std::uint8_t* data() { return data_; }
  const std::uint8_t* data() const { return data_; }
  // Bytes [begin, end) as a uint8 tensor viewing the mapping (sent or received into).
  torch::Tensor bytes(std::uint64_t begin, std::uint64_t end) const;

 private:
  MappedFile(std::string path, std::uint64_t size, int fd, std::uint8_t* data);
  std::string path_;
  std::uint64_t size_;
  int fd_;
  std::uint8_t* data_;
};

struct NamedTensor {
  std::string name;
  torch::Tensor tensor;  // any device and dtype; stored as it is
};

// Lays `tensors` (names unique) and `metadata` out in `buffer` as the bytes of a safetensors
// file, each tensor copied once from wherever it is; returns the file's size. The buffer is
// grown when too small and otherwise reused: its pages stay mapped from one save to the next,
// so the copy runs at memory speed (the training thread waits for it).
std::uint64_t fill_state_buffer(std::vector<std::uint8_t>& buffer, const std::vector<NamedTensor>& tensors,
                                const std::map<std::string, std::string>& metadata);

}  // namespace mpitrain::checkpoint
