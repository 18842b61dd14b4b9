// Reads any block of any tensor from an HF directory or a sharded save, whatever layout wrote it: only the bytes of the block are read.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "runtime/checkpoint/layout.h"

namespace mpitrain::checkpoint {

class CheckpointReader {
 public:
  explicit CheckpointReader(const std::string& dir);
  ~CheckpointReader();
  bool sharded() const { return sharded_; }
  const std::string& dir() const;
  bool contains(const std::string& name) const;
  std::vector<std::string> names() const;  // every tensor it holds, sorted
  std::vector<std::int64_t> shape(const std::string& name) const;
  // Returns the block as a new tensor of the stored dtype. `view`: the coordinates of `block`
  // when not the tensor's shape (same row-major bytes, e.g. a fused dim seen as [parts, n]).
  torch::Tensor read(const std::string& name, const Block& block, const std::vector<std::int64_t>& view = {}) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  bool sharded_ = false;
};

}  // namespace mpitrain::checkpoint
