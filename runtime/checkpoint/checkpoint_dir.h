// Training checkpoints on disk: checkpoint-<step> directories committed atomically, found, rotated and cleaned.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/checkpoint/checkpoint_schema.h"

namespace mpitrain::checkpoint {

std::string checkpoint_name(std::int64_t step);  // "checkpoint-<step>"
// Where the ranks write a checkpoint before it is committed: <root>/.tmp-checkpoint-<step>.
std::string staging_dir(const std::string& root, std::int64_t step);

// Rank 0, before the ranks write: removes any leftover staging dir for `step` and creates it,
// tagged as this project's.
void prepare_staging_dir(const std::string& root, std::int64_t step);

// Rank 0, after every rank has written and fsynced its files into the staging dir: renames it
// to checkpoint-<step> (replacing an incomplete one), fsyncs the root, then writes the marker.
// Returns the final path.
std::string commit_staging_dir(const std::string& root, std::int64_t step, const std::string& marker_json);

bool is_complete_checkpoint(const std::string& dir);
// Complete, or tagged as one this project started to write.
bool is_own_checkpoint(const std::string& dir);

struct CheckpointEntry {
  std::int64_t step;
  std::string path;
};
// Complete checkpoints under root, oldest first.
std::vector<CheckpointEntry> complete_checkpoints(const std::string& root);
// Incomplete checkpoint dirs (own ones only), staging dirs and rotated-out dirs set aside
// (.deleting-checkpoint-N) left by a killed job.
std::vector<std::string> incomplete_checkpoints(const std::string& root);
// checkpoint-N entries under root this project did not write (no marker, no tag), sorted.
std::vector<std::string> foreign_checkpoints(const std::string& root);

// Which checkpoints to delete so that at most `limit` remain (0 = no limit), oldest first,
// never `protect` (the best checkpoint), which does not count against the limit.
std::vector<std::string> checkpoints_to_rotate(const std::vector<CheckpointEntry>& complete, std::int64_t limit,
                                               const std::string& protect);

}  // namespace mpitrain::checkpoint
