// The weights of a Hugging Face model directory (single file or shards + index): open for reading, or save.
#include "runtime/checkpoint/hf_weights.h"

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "runtime/checkpoint/atomic_file.h"
#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/hf_index.h"

namespace mpitrain::checkpoint {

namespace fs = std::filesystem;

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw CheckpointError(path, "cannot open");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

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
    throw CheckpointError(path, has_bin ? "holds only pytorch_model.bin weights; convert them to safetensors first"
                                        : "no model.safetensors or model.safetensors.index.json");
  }
  const ShardIndex index = parse_shard_index(read_text_file(index_path.string()), index_path.string());
  std::map<std::string, const SafetensorsFile*> by_name;
  for (const auto& shard : index.shard_files()) {
    const fs::path shard_path = dir / shard;
    if (!fs::exists(shard_path))
      throw CheckpointError(index_path.string(), "names shard '" + shard + "', which does not exist");
    by_name[shard] = &add_file(shard_path.string());
  }
  for (const auto& [name, shard] : index.weight_map) {
    const SafetensorsFile* file = by_name.at(shard);
    const TensorEntry* entry = file->header().find(name);
    if (!entry)
      throw CheckpointError(index_path.string(),
                            "index puts tensor '" + name + "' in '" + shard + "', which does not hold it");
    weights.tensors_[name] = {file, entry};
  }
  std::uint64_t total = 0;
  for (const auto& file : weights.files_) {
    for (const auto& t : file->header().tensors) {
      total += t.nbytes();
      auto it = index.weight_map.find(t.name);
      if (it == index.weight_map.end() || by_name.at(it->second) != file.get())
        throw CheckpointError(index_path.string(), "shard '" + fs::path(file->path()).filename().string() +
                                                       "' holds tensor '" + t.name + "', which the index " +
                                                       (it == index.weight_map.end() ? "does not list"
                                                                                     : "puts in '" + it->second + "'"));
    }
  }
  if (index.has_total_size && index.total_size != total)
    throw CheckpointError(index_path.string(), "metadata.total_size is " + std::to_string(index.total_size) +
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
  std::vector<std::uint64_t> sizes;
  SavedWeights saved;
  for (const auto& t : tensors) {
    sizes.push_back(spec_nbytes(t.spec));
    saved.total_size += sizes.back();
  }
  const auto shards = plan_shards(sizes, max_shard_size);
  saved.sharded = shards.size() > 1;

  ShardIndex index;
  index.total_size = saved.total_size;
  index.has_total_size = true;
  for (std::size_t s = 0; s < shards.size(); ++s) {
    const std::string name = saved.sharded ? shard_file_name(s, shards.size()) : kSingleWeightsFile;
    std::vector<TensorBytes> members;
    for (auto i : shards[s]) {
      members.push_back(tensors[i]);
      index.weight_map[tensors[i].spec.name] = name;
    }
    write_safetensors((fs::path(dir) / name).string(), members);
    saved.files.push_back(name);
  }
  if (shards.empty()) {  // a model with no tensors still gets a valid (empty) weights file
    write_safetensors((fs::path(dir) / kSingleWeightsFile).string(), {});
    saved.files.push_back(kSingleWeightsFile);
  }
  std::vector<std::string> keep = saved.files;
  if (saved.sharded) {
    write_file_atomically((fs::path(dir) / kWeightsIndexFile).string(), shard_index_to_json(index));
    keep.push_back(kWeightsIndexFile);
  }
  // Stale files go last: until then a reader sees the previous complete save or, for a
  // single file (which wins over an index), the new one.
  for (const auto& name : stale_weight_files(dir, keep)) fs::remove(fs::path(dir) / name);
  fsync_directory(dir);
  return saved;
}

}  // namespace mpitrain::checkpoint
