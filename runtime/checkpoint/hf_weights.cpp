// The weights of a Hugging Face model directory (single file or shards + index): open for reading, or save.
#include "runtime/checkpoint/hf_weights.h"

#include <filesystem>
#include <regex>
#include <set>

#include "runtime/checkpoint/atomic_file.h"
#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/hf_index.h"
#include "runtime/checkpoint/input_file.h"
#include "runtime/checkpoint/save_plan.h"

namespace mpitrain::checkpoint {

namespace fs = std::filesystem;


HfWeights HfWeights::open(const std::string& path) {
  HfWeights weights;
  weights.source_ = path;
  auto add_file = [&](const std::string& file_path) -> const SafetensorsFile& {
    weights.files_.push_back(std::make_unique<SafetensorsFile>(file_path));
    return *weights.files_.back();
  };

  if (!fs::exists(path)) throw CheckpointError(path, "no such file or directory");
  if (!fs::is_directory(path)) {
    const auto& file = add_file(path);
    for (const auto& t : file.header().tensors) weights.tensors_[t.name] = {&file, &t};
    return weights;
  }

  const fs::path dir(path);
  if (fs::exists(dir / kSingleWeightsFile)) {
    const auto& file = add_file((dir / kSingleWeightsFile).string());
    for (const auto& t : file.header().tensors) weights.tensors_[t.name] = {&file, &t};
    return weights;
  }
  const fs::path index_path = dir / kWeightsIndexFile;
  if (!fs::exists(index_path)) {
    const bool has_bin = fs::exists(dir / "pytorch_model.bin") || fs::exists(dir / "pytorch_model.bin.index.json");
    throw CheckpointError(path, has_bin ? "holds only pytorch_model.bin weights, which only train, logits, generate and convert read (mpitrain convert DIR OUT writes safetensors)"
                                        : "no model.safetensors or model.safetensors.index.json");
  }
  const ShardIndex index = parse_shard_index(read_regular_file(index_path.string()), index_path.string());
  std::map<std::string, std::unique_ptr<SafetensorsFile>> shards;
  for (const auto& shard : index.shard_files()) {
    const fs::path shard_path = dir / shard;
    if (!fs::exists(shard_path))
      throw CheckpointError(index_path.string(), "names shard '" + shard + "', which does not exist");
    shards[shard] = std::make_unique<SafetensorsFile>(shard_path.string());
  }
  return from_files(path, std::move(shards), &index, index_path.string());
}

HfWeights HfWeights::from_files(std::string source, std::map<std::string, std::unique_ptr<SafetensorsFile>> shards,
                                const ShardIndex* index, const std::string& index_path) {
  HfWeights weights;
  weights.source_ = std::move(source);
  std::map<std::string, const SafetensorsFile*> by_name;
  for (auto& [name, file] : shards) {
    by_name[name] = file.get();
    weights.files_.push_back(std::move(file));
  }
  if (!index) {
    for (const auto& file : weights.files_)
      for (const auto& t : file->header().tensors) weights.tensors_[t.name] = {file.get(), &t};
    return weights;
  }
  for (const auto& [name, shard] : index->weight_map) {
    const SafetensorsFile* file = by_name.at(shard);
    const TensorEntry* entry = file->header().find(name);
    if (!entry)
      throw CheckpointError(index_path, "index puts tensor '" + name + "' in '" + shard + "', which does not hold it");
    weights.tensors_[name] = {file, entry};
  }
  std::uint64_t total = 0;
  for (const auto& file : weights.files_) {
    for (const auto& t : file->header().tensors) {
      total += t.nbytes();
      auto it = index->weight_map.find(t.name);
      if (it == index->weight_map.end() || by_name.at(it->second) != file.get())
        throw CheckpointError(index_path, "shard '" + fs::path(file->path()).filename().string() +
                                              "' holds tensor '" + t.name + "', which the index " +
                                              (it == index->weight_map.end() ? "does not list"
                                                                             : "puts in '" + it->second + "'"));
    }
  }
  if (index->has_total_size && index->total_size != total)
    throw CheckpointError(index_path, "metadata.total_size is " + std::to_string(index->total_size) +
                                          " but the shards hold " + std::to_string(total) + " bytes");
  return weights;
}

std::vector<std::string> HfWeights::names() const {
  std::vector<std::string> out;
  for (const auto& [name, located] : tensors_) out.push_back(name);
  return out;
}

const TensorEntry& HfWeights::entry(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) throw CheckpointError(source_, "no tensor named '" + name + "'");
  return *it->second.entry;
}

const SafetensorsFile& HfWeights::file_of(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) throw CheckpointError(source_, "no tensor named '" + name + "'");
  return *it->second.file;
}

std::vector<std::string> stale_weight_files(const std::string& dir, const std::vector<std::string>& keep) {
  static const std::regex kWeightFile(
      R"((model(-\d+-of-\d+)?\.safetensors)|(model\.safetensors\.index\.json)|(pytorch_model(-\d+-of-\d+)?\.bin)|(pytorch_model\.bin\.index\.json))");
  const std::set<std::string> keep_set(keep.begin(), keep.end());
  std::vector<std::string> stale;
  for (const auto& item : fs::directory_iterator(dir)) {
    const std::string name = item.path().filename().string();
    if (item.is_regular_file() && std::regex_match(name, kWeightFile) && !keep_set.count(name))
      stale.push_back(name);
  }
  std::sort(stale.begin(), stale.end());
  return stale;
}

SavedWeights save_hf_weights(const std::string& dir, const std::vector<TensorBytes>& tensors,
                             std::uint64_t max_shard_size) {
  fs::create_directories(dir);
  std::vector<TensorSpec> specs;
  for (const auto& t : tensors) specs.push_back(t.spec);
  const SavePlan plan = plan_hf_save(specs, max_shard_size);
  std::vector<std::vector<TensorBytes>> members(plan.files.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) members[plan.tensors[i].file].push_back(tensors[i]);
  SavedWeights saved;
  saved.sharded = plan.sharded;
  saved.total_size = plan.total_bytes;
  for (std::size_t f = 0; f < plan.files.size(); ++f) {
    write_safetensors((fs::path(dir) / plan.files[f].name).string(), members[f]);
    saved.files.push_back(plan.files[f].name);
  }
  finish_hf_save(dir, plan);
  return saved;
}

void finish_hf_save(const std::string& dir, const SavePlan& plan) {
  std::vector<std::string> keep;
  for (const auto& f : plan.files) keep.push_back(f.name);
  if (plan.sharded) {
    write_file_atomically((fs::path(dir) / kWeightsIndexFile).string(), shard_index_to_json(plan.index));
    keep.push_back(kWeightsIndexFile);
  }
  // Stale files go last: until then a reader sees the previous complete save or, for a
  // single file (which wins over an index), the new one.
  for (const auto& name : stale_weight_files(dir, keep)) fs::remove(fs::path(dir) / name);
  fsync_directory(dir);
}

}  // namespace mpitrain::checkpoint
