// Training checkpoints on disk: checkpoint-<step> directories committed atomically, found, rotated and cleaned.
#include "runtime/checkpoint/checkpoint_dir.h"

#include <algorithm>
#include <filesystem>
#include <regex>

#include "runtime/checkpoint/atomic_file.h"
#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/crash_point.h"
#include "runtime/checkpoint/remove_tree.h"

namespace mpitrain::checkpoint {

namespace fs = std::filesystem;

std::string checkpoint_name(std::int64_t step) { return kCheckpointPrefix + std::to_string(step); }

std::string staging_dir(const std::string& root, std::int64_t step) {
  return (fs::path(root) / (kStagingPrefix + checkpoint_name(step))).string();
}

void prepare_staging_dir(const std::string& root, std::int64_t step) {
  const auto dir = staging_dir(root, step);
  remove_tree(dir);
  fs::create_directories(dir);
  write_file_atomically((fs::path(dir) / kOwnCheckpointTag).string(), "");
}

std::string commit_staging_dir(const std::string& root, std::int64_t step, const std::string& marker_json) {
  const auto staging = staging_dir(root, step);
  const auto final_path = (fs::path(root) / checkpoint_name(step)).string();
  fsync_directory(staging);
  // A complete checkpoint of the same step is replaced only after the new one is whole; a
  // directory of that name that is not one of ours is never replaced.
  if (fs::exists(fs::symlink_status(final_path))) {
    if (!is_own_checkpoint(final_path))
      throw CheckpointError(final_path, "exists and was not written by mpitrain: not replaced (move it)");
    remove_tree(final_path);
  }
  fs::rename(staging, final_path);
  fsync_directory(root);
  crash_point("checkpoint.renamed", 0);  // in place, but no marker yet: still incomplete
  write_file_atomically((fs::path(final_path) / kCompleteMarker).string(), marker_json);
  return final_path;
}

bool is_complete_checkpoint(const std::string& dir) { return fs::is_regular_file(fs::path(dir) / kCompleteMarker); }

bool is_own_checkpoint(const std::string& dir) {
  return !fs::is_symlink(dir) && (is_complete_checkpoint(dir) || fs::is_regular_file(fs::path(dir) / kOwnCheckpointTag));
}

namespace {

const std::regex kCheckpointName(std::string(kCheckpointPrefix) + R"((\d+))");

// The entries of root whose name and path `wanted` accepts, sorted.
template <class Wanted>
std::vector<std::string> entries_where(const std::string& root, Wanted wanted) {
  std::vector<std::string> out;
  if (!fs::is_directory(root)) return out;
  for (const auto& item : fs::directory_iterator(root))
    if (wanted(item, item.path().filename().string())) out.push_back(item.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

std::vector<CheckpointEntry> complete_checkpoints(const std::string& root) {
  std::vector<CheckpointEntry> out;
  if (!fs::is_directory(root)) return out;
  for (const auto& item : fs::directory_iterator(root)) {
    std::smatch match;
    const auto name = item.path().filename().string();
    if (item.is_directory() && std::regex_match(name, match, kCheckpointName) &&
        is_complete_checkpoint(item.path().string()))
      out.push_back({std::stoll(match[1]), item.path().string()});
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.step < b.step; });
  return out;
}

std::vector<std::string> incomplete_checkpoints(const std::string& root) {
  return entries_where(root, [](const fs::directory_entry& item, const std::string& name) {
    if (!item.is_directory()) return false;
    const auto path = item.path().string();
    // A staging dir, what a rotation killed midway left set aside, or a checkpoint never committed.
    return name.rfind(std::string(kStagingPrefix) + kCheckpointPrefix, 0) == 0 ||
           name.rfind(std::string(kDeletingPrefix) + kCheckpointPrefix, 0) == 0 ||
           (std::regex_match(name, kCheckpointName) && is_own_checkpoint(path) && !is_complete_checkpoint(path));
  });
}

std::vector<std::string> foreign_checkpoints(const std::string& root) {
  return entries_where(root, [](const fs::directory_entry& item, const std::string& name) {
    return std::regex_match(name, kCheckpointName) && !is_own_checkpoint(item.path().string());
  });
}

std::vector<std::string> checkpoints_to_rotate(const std::vector<CheckpointEntry>& complete, std::int64_t limit,
                                               const std::string& protect) {
  std::vector<std::string> candidates;
  for (const auto& c : complete)
    if (fs::path(c.path).filename() != fs::path(protect).filename() || protect.empty()) candidates.push_back(c.path);
  std::vector<std::string> out;
  if (limit <= 0) return out;
  const bool protecting = candidates.size() != complete.size();
  // The protected best counts as one of the kept ones when the limit allows, as in transformers.
  const std::int64_t keep = protecting ? std::max<std::int64_t>(limit - 1, 1) : limit;
  while (static_cast<std::int64_t>(candidates.size()) > keep) {
    out.push_back(candidates.front());
    candidates.erase(candidates.begin());
  }
  return out;
}

}  // namespace mpitrain::checkpoint
