// Checksums of a checkpoint's files (size and XXH64), recorded in its completion marker and verified before a resume reads it.
#include "runtime/checkpoint/checksums.h"

#include <algorithm>
#include <filesystem>

#include "runtime/checkpoint/checkpoint_dir.h"
#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/hf_weights.h"
#include "runtime/checkpoint/xxhash64.h"

namespace mpitrain::checkpoint {

namespace fs = std::filesystem;

std::vector<std::string> checkpoint_files(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& item : fs::recursive_directory_iterator(dir)) {
    if (!item.is_regular_file()) continue;
    const auto relative = fs::relative(item.path(), dir).string();
    if (relative != kCompleteMarker) files.push_back(relative);
  }
  std::sort(files.begin(), files.end());
  return files;
}

FileChecksum checksum_file(const std::string& dir, const std::string& relative) {
  const auto path = (fs::path(dir) / relative).string();
  return {relative, static_cast<std::uint64_t>(fs::file_size(path)), file_xxh64(path)};
}

nlohmann::json checksums_to_json(const std::vector<FileChecksum>& sums) {
  nlohmann::json files = nlohmann::json::object();
  for (const auto& s : sums) files[s.path] = {{"size", s.size}, {"xxh64", s.xxh64}};
  return files;
}

namespace {

bool ends_with(const std::string& name, const std::string& suffix) {
  return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Every file a reader of `dir` may read (`wanted`) must be listed in the marker.
template <class Wanted>
void require_listed(const std::string& dir, const CompletionMarker& marker, Wanted wanted) {
  for (const auto& file : checkpoint_files(dir))
    if (wanted(file) && !marker.files.contains(file))
      throw CheckpointError((fs::path(dir) / file).string(),
                            "is not listed in " + std::string(kCompleteMarker) +
                                " (the marker was edited, or the file added since the save): it would be read "
                                "unverified; verify_checksums=false reads the checkpoint as it is");
}

bool read_by_a_resume(const std::string& name) { return ends_with(name, ".safetensors") || ends_with(name, ".json"); }

void require_some_files(const std::string& dir, const CompletionMarker& marker) {
  if (marker.files.empty())
    throw CheckpointError((fs::path(dir) / kCompleteMarker).string(),
                          "lists no files to verify (edited, or written before mpitrain recorded checksums); "
                          "verify_checksums=false reads the checkpoint unverified");
}

// The marker's files with index % count == which, as saved.
void verify_listed(const std::string& dir, const CompletionMarker& marker, int which, int count) {
  require_some_files(dir, marker);
  int index = 0;
  for (auto it = marker.files.begin(); it != marker.files.end(); ++it, ++index) {
    if (index % count != which) continue;
    const auto path = (fs::path(dir) / it.key()).string();
    if (!fs::is_regular_file(path)) throw CheckpointError(path, "is missing (listed in " + std::string(kCompleteMarker) + ")");
    const auto size = static_cast<std::uint64_t>(fs::file_size(path));
    const auto expected_size = it.value().at("size").get<std::uint64_t>();
    if (size != expected_size)
      throw CheckpointError(path, "has " + std::to_string(size) + " bytes but " + std::to_string(expected_size) +
                                      " were saved: the file was truncated or replaced");
    const auto sum = file_xxh64(path);
    if (sum != it.value().at("xxh64").get<std::string>())
      throw CheckpointError(path, "checksum mismatch (xxh64 " + sum + ", saved " + it.value().at("xxh64").get<std::string>() +
                                      "): the file is corrupted");
  }
}

}  // namespace

void verify_checksums(const std::string& dir, const CompletionMarker& marker, int which, int count) {
  require_some_files(dir, marker);
  require_listed(dir, marker, read_by_a_resume);
  verify_listed(dir, marker, which, count);
}

bool verify_if_checkpoint(const std::string& dir, int which, int count) {
  if (!fs::is_regular_file(fs::path(dir) / kCompleteMarker)) return false;
  auto marker = read_completion_marker(dir);
  // What a model reader reads: config.json, the weight files and their indexes. Not the
  // optimizer state, the ranks' RNG streams, the tokenizer or the trainer's state (a job may
  // have pruned them to save space; hashing them would only cost time).
  const auto read_by_a_model_reader = [](const std::string& name) {
    if (name.find('/') != std::string::npos) return false;
    return name == "config.json" || ends_with(name, "index.json") ||
           (ends_with(name, ".safetensors") && !is_rng_state_file(name));
  };
  require_some_files(dir, marker);
  require_listed(dir, marker, read_by_a_model_reader);
  for (auto it = marker.files.begin(); it != marker.files.end();)
    if (read_by_a_model_reader(it.key()))
      ++it;
    else
      it = marker.files.erase(it);
  verify_listed(dir, marker, which, count);
  return true;
}

}  // namespace mpitrain::checkpoint
