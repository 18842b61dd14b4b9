// Inspection of a safetensors file or HF directory: every tensor, totals, and every format problem found.
#include "runtime/checkpoint/inspect.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <set>

#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/input_file.h"
#include "runtime/checkpoint/checkpoint_schema.h"
#include "runtime/checkpoint/hf_index.h"
#include "runtime/checkpoint/hf_weights.h"
#include "runtime/checkpoint/safetensors_file.h"
#include "runtime/checkpoint/sharded_index.h"

namespace mpitrain::checkpoint {

namespace fs = std::filesystem;

namespace {

// Reads one file's header into the report; returns its tensor names (empty on a problem).
std::set<std::string> inspect_file(const fs::path& path, const std::string& label, InspectReport& report) {
  std::set<std::string> names;
  try {
    SafetensorsFile file(path.string());
    report.files.push_back(label);
    for (const auto& t : file.header().tensors) {
      report.tensors.push_back({label, t});
      names.insert(t.name);
    }
    auto format = file.header().metadata.find("format");
    if (format == file.header().metadata.end())
      report.problems.push_back(path.string() + ": __metadata__ has no \"format\" key (transformers needs \"pt\")");
  } catch (const std::exception& e) {
    report.problems.push_back(e.what());
  }
  return names;
}

void inspect_index(const fs::path& dir, InspectReport& report,
                   const std::map<std::string, std::set<std::string>>& file_tensors) {
  const fs::path index_path = dir / kWeightsIndexFile;
  ShardIndex index;
  try {
    index = parse_shard_index(read_regular_file(index_path.string()), index_path.string());
  } catch (const std::exception& e) {
    report.problems.push_back(e.what());
    return;
  }
  const std::string where = index_path.string() + ": ";
  std::set<std::string> referenced;
  for (const auto& [name, shard] : index.weight_map) {
    referenced.insert(shard);
    auto it = file_tensors.find(shard);
    if (!fs::exists(dir / shard)) continue;  // reported once per shard below
    if (it != file_tensors.end() && !it->second.count(name))
      report.problems.push_back(where + "index puts tensor '" + name + "' in '" + shard + "', which does not hold it");
  }
  for (const auto& shard : referenced)
    if (!fs::exists(dir / shard)) report.problems.push_back(where + "names shard '" + shard + "', which does not exist");
  std::uint64_t total = 0;
  for (const auto& [file, names] : file_tensors) {
    if (file == kSingleWeightsFile) continue;
    if (!referenced.count(file))
      report.problems.push_back(where + "weight file '" + file + "' is not referenced by the index (stale?)");
    for (const auto& name : names) {
      auto it = index.weight_map.find(name);
      if (referenced.count(file) && (it == index.weight_map.end() || it->second != file))
        report.problems.push_back(where + "shard '" + file + "' holds tensor '" + name + "', which the index " +
                                  (it == index.weight_map.end() ? "does not list" : "puts in '" + it->second + "'"));
    }
  }
  for (const auto& t : report.tensors)
    if (referenced.count(t.file)) total += t.entry.nbytes();
  if (index.has_total_size && index.total_size != total)
    report.problems.push_back(where + "metadata.total_size is " + std::to_string(index.total_size) +
                              " but the shards hold " + std::to_string(total) + " bytes");
}

// A sharded save (save_mode=sharded): its index checked (blocks inside, disjoint, covering
// each tensor), and each block found in its shard file with its dtype and shape. The tensors
// listed are the whole ones the index describes.
void inspect_sharded(const fs::path& dir, InspectReport& report) {
  std::vector<ShardedTensor> tensors;
  try {
    tensors = read_sharded_index(dir.string());
  } catch (const std::exception& e) {
    report.problems.push_back(e.what());
    return;
  }
  std::map<std::string, std::map<std::string, TensorEntry>> shard_entries;  // file -> name -> entry
  std::set<std::string> unreadable;
  for (const auto& t : tensors)
    for (const auto& b : t.blocks) {
      if (shard_entries.count(b.file) || unreadable.count(b.file)) continue;
      try {
        SafetensorsFile file((dir / b.file).string());
        report.files.push_back(b.file);
        for (const auto& entry : file.header().tensors) shard_entries[b.file][entry.name] = entry;
      } catch (const std::exception& e) {
        report.problems.push_back(e.what());
        unreadable.insert(b.file);
      }
    }
  const std::string where = (dir / kShardedIndexFile).string() + ": ";
  for (const auto& t : tensors) {
    for (const auto& b : t.blocks) {
      if (unreadable.count(b.file)) continue;
      const auto& entries = shard_entries[b.file];
      const auto it = entries.find(t.spec.name);
      if (it == entries.end())
        report.problems.push_back(where + "tensor '" + t.spec.name + "' has a block in '" + b.file +
                                  "', which does not hold it");
      else if (it->second.dtype != t.spec.dtype || it->second.shape != b.block.sizes)
        report.problems.push_back(where + "tensor '" + t.spec.name + "': its block in '" + b.file +
                                  "' is not of the dtype and block shape the index gives");
    }
    TensorEntry whole;
    whole.name = t.spec.name;
    whole.dtype = t.spec.dtype;
    whole.shape = t.spec.shape;
    whole.end = spec_nbytes(t.spec);
    report.tensors.push_back({std::string(kShardedIndexFile) + " (" + std::to_string(t.blocks.size()) + " blocks)", whole});
  }
}

}  // namespace

InspectReport inspect_checkpoint(const std::string& path) {
  InspectReport report;
  if (!fs::exists(path)) {
    report.problems.push_back(path + ": no such file or directory");
    return report;
  }
  if (!fs::is_directory(path)) {
    inspect_file(path, fs::path(path).filename().string(), report);
  } else {
    // The weights transformers loads: model.safetensors or its shards (model-*.safetensors, an
    // unreferenced one is stale). A training checkpoint's other safetensors files (each rank's
    // RNG state, optimizer moments) are not weights: their same-named tensors are no conflict.
    std::vector<fs::path> weight_files;
    for (const auto& item : fs::directory_iterator(path)) {
      const auto name = item.path().filename().string();
      if (item.is_regular_file() && item.path().extension() == ".safetensors" &&
          (name == kSingleWeightsFile || name.rfind("model-", 0) == 0))
        weight_files.push_back(item.path());
    }
    std::sort(weight_files.begin(), weight_files.end());
    std::map<std::string, std::set<std::string>> file_tensors;
    for (const auto& file : weight_files)
      file_tensors[file.filename().string()] = inspect_file(file, file.filename().string(), report);

    const bool has_single = fs::exists(fs::path(path) / kSingleWeightsFile);
    const bool has_index = fs::exists(fs::path(path) / kWeightsIndexFile);
    if (has_index) inspect_index(path, report, file_tensors);
    if (has_single && has_index)
      report.problems.push_back(path + ": both model.safetensors and an index exist; transformers loads "
                                       "model.safetensors and ignores the index (stale files from another save?)");
    if (!has_single && !has_index) {
      if (fs::exists(fs::path(path) / kShardedIndexFile))
        inspect_sharded(path, report);  // a training checkpoint: `mpitrain consolidate` makes it an HF directory
      else
        report.problems.push_back(path + ": no model.safetensors or model.safetensors.index.json");
    }
    // In a well-formed directory the tensors a loader sees are unique; duplicates across files mean stale data.
    std::map<std::string, std::string> first_file;
    for (const auto& t : report.tensors) {
      auto [it, inserted] = first_file.emplace(t.entry.name, t.file);
      if (!inserted)
        report.problems.push_back(path + ": tensor '" + t.entry.name + "' appears in both '" + it->second +
                                  "' and '" + t.file + "'");
    }
  }
  std::sort(report.tensors.begin(), report.tensors.end(), [](const InspectedTensor& a, const InspectedTensor& b) {
    return a.entry.name != b.entry.name ? a.entry.name < b.entry.name : a.file < b.file;
  });
  for (const auto& t : report.tensors) {
    report.total_bytes += t.entry.nbytes();
    report.total_elements += static_cast<std::uint64_t>(t.entry.numel());
  }
  return report;
}

}  // namespace mpitrain::checkpoint
