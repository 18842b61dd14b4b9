// Reads any block of any tensor from an HF directory or a sharded save, whatever layout wrote it: only the bytes of the block are read.
#include "runtime/checkpoint/checkpoint_reader.h"

#include <algorithm>
#include <filesystem>
#include <map>

#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/checkpoint_schema.h"
#include "runtime/checkpoint/hf_weights.h"
#include "runtime/checkpoint/safetensors_file.h"
#include "runtime/checkpoint/sharded_format.h"
#include "runtime/checkpoint/torch_bin.h"
#include "runtime/checkpoint/torch_tensors.h"

namespace mpitrain::checkpoint {

namespace fs = std::filesystem;

struct CheckpointReader::Impl {
  std::string dir;
  std::vector<ShardedTensor> sharded;
  std::map<std::string, std::unique_ptr<SafetensorsFile>> files;  // sharded: by file name
  std::unique_ptr<HfWeights> weights;                              // consolidated

  const SafetensorsFile& file(const std::string& name) {
    auto& slot = files[name];
    if (!slot) {
      const auto path = fs::path(dir) / name;
      if (!fs::exists(path)) throw CheckpointError(path.string(), "shard named by the sharded index does not exist");
      slot = std::make_unique<SafetensorsFile>(path.string());
    }
    return *slot;
  }
  const ShardedTensor* find(const std::string& name) const {
    for (const auto& t : sharded)
      if (t.spec.name == name) return &t;
    return nullptr;
  }
};

CheckpointReader::CheckpointReader(const std::string& dir) : impl_(std::make_unique<Impl>()) {
  impl_->dir = dir;
  sharded_ = fs::exists(fs::path(dir) / kShardedIndexFile);
  if (sharded_)
    impl_->sharded = read_sharded_index(dir);
  else
    impl_->weights = std::make_unique<HfWeights>(open_model_weights(dir));
}

CheckpointReader::~CheckpointReader() = default;

const std::string& CheckpointReader::dir() const { return impl_->dir; }

bool CheckpointReader::contains(const std::string& name) const {
  return sharded_ ? impl_->find(name) != nullptr : impl_->weights->contains(name);
}

std::vector<std::string> CheckpointReader::names() const {
  if (!sharded_) return impl_->weights->names();
  std::vector<std::string> names;
  for (const auto& t : impl_->sharded) names.push_back(t.spec.name);
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<std::int64_t> CheckpointReader::shape(const std::string& name) const {
  if (!sharded_) return impl_->weights->entry(name).shape;
  const auto* t = impl_->find(name);
  if (!t) throw CheckpointError(impl_->dir, "no tensor named '" + name + "'");
  return t->spec.shape;
}

torch::Tensor CheckpointReader::read(const std::string& name, const Block& block,
                                     const std::vector<std::int64_t>& view) const {
  if (!sharded_) {
    const auto& file = impl_->weights->file_of(name);
    auto entry = file.entry(name);
    if (!view.empty()) entry.shape = view;  // the same bytes in the caller's coordinates
    return read_tensor_slice(file, entry, block.offsets, block.sizes);
  }
  const auto* t = impl_->find(name);
  if (!t) throw CheckpointError(impl_->dir, "no tensor named '" + name + "'");
  const auto& coords = view.empty() ? t->spec.shape : view;
  if (coords != t->view) {
    // Saved in other coordinates (a fused tensor viewed differently): assemble the whole
    // tensor, then take the block. Costs one tensor of memory; only fused tensors get here.
    auto whole = read(name, Block::whole(t->view), t->view).view(coords);
    auto out = whole;
    for (std::size_t d = 0; d < coords.size(); ++d)
      out = out.narrow(static_cast<std::int64_t>(d), block.offsets[d], block.sizes[d]);
    return out.contiguous();
  }
  auto out = torch::empty(block.sizes, torch::TensorOptions().dtype(to_scalar_type(t->spec.dtype, name)));
  for (const auto& saved : t->blocks) {
    const auto overlap = saved.block.intersect(block);
    if (overlap.empty()) continue;
    const auto& file = impl_->file(saved.file);
    const auto& entry = file.entry(name);
    if (entry.shape != saved.block.sizes || entry.dtype != t->spec.dtype)
      throw CheckpointError(file.path(), "tensor '" + name + "' does not match the sharded index");
    std::vector<std::int64_t> in_saved, in_target;
    for (std::size_t d = 0; d < overlap.offsets.size(); ++d) {
      in_saved.push_back(overlap.offsets[d] - saved.block.offsets[d]);
      in_target.push_back(overlap.offsets[d] - block.offsets[d]);
    }
    auto piece = read_tensor_slice(file, entry, in_saved, overlap.sizes);
    auto target = out;
    for (std::size_t d = 0; d < overlap.offsets.size(); ++d)
      target = target.narrow(static_cast<std::int64_t>(d), in_target[d], overlap.sizes[d]);
    target.copy_(piece);
  }
  return out;
}

}  // namespace mpitrain::checkpoint
