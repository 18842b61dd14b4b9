// The weights of a Hugging Face model directory (single file or shards + index): open for reading, or save.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "runtime/checkpoint/hf_index.h"
#include "runtime/checkpoint/safetensors_file.h"
#include "runtime/checkpoint/safetensors_writer.h"

namespace mpitrain::checkpoint {

class HfWeights {
 public:
  // `path` is a model directory or one .safetensors file. A directory's model.safetensors
  // wins over an index, as in transformers. The index and its shards are cross-checked:
  // every named tensor must be in its shard and every shard tensor in the index.
  static HfWeights open(const std::string& path);
  // Weights in files opened already (another format converted in memory): one file, or with
  // `index` (read from `index_path`) its shards by file name, cross-checked as open() does.
  static HfWeights from_files(std::string source, std::map<std::string, std::unique_ptr<SafetensorsFile>> shards,
                              const ShardIndex* index, const std::string& index_path);

  const std::string& source() const { return source_; }
  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  // Throws CheckpointError naming the source when the tensor is absent.
  const TensorEntry& entry(const std::string& name) const;
  const SafetensorsFile& file_of(const std::string& name) const;
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }

 private:
  struct Located {
    const SafetensorsFile* file;
    const TensorEntry* entry;
  };
  std::string source_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, Located> tensors_;
};

struct SavedWeights {
  std::vector<std::string> files;  // written weight files, in shard order
  bool sharded = false;
  std::uint64_t total_size = 0;
};

// Writes tensors (given in state-dict order, which decides the sharding as in transformers)
// into `dir` as model.safetensors, or as shards + index above max_shard_size; then removes
// weight files of an earlier save that the new one does not use.
SavedWeights save_hf_weights(const std::string& dir, const std::vector<TensorBytes>& tensors,
                             std::uint64_t max_shard_size);

struct SavePlan;
// After a plan's weight files are complete in `dir`: writes the index (sharded plans) and
// removes weight files of an earlier save that the plan does not use.
void finish_hf_save(const std::string& dir, const SavePlan& plan);

// Weight files in `dir` (model*.safetensors, the index, pytorch_model*.bin) not in `keep`.
std::vector<std::string> stale_weight_files(const std::string& dir, const std::vector<std::string>& keep);

}  // namespace mpitrain::checkpoint
