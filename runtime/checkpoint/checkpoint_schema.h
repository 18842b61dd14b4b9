// The one place a training checkpoint's names are spelled: its directory and file names, and the completion marker with its reader and writer.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace mpitrain::checkpoint {

// <output_dir>/checkpoint-<step>: a training checkpoint once its marker exists.
inline constexpr const char* kCheckpointPrefix = "checkpoint-";
// <output_dir>/.tmp-checkpoint-<step>: where the ranks write before the commit renames it.
inline constexpr const char* kStagingPrefix = ".tmp-";
// <output_dir>/.deleting-checkpoint-<step>: a rotated checkpoint set aside before its deletion.
inline constexpr const char* kDeletingPrefix = ".deleting-";

// A checkpoint is complete only when this file exists; it is written last.
inline constexpr const char* kCompleteMarker = "mpitrain_complete.json";
// Written first into every checkpoint this project saves: a checkpoint-N directory with
// neither file is someone else's (another trainer's, a user's folder) and is never deleted.
inline constexpr const char* kOwnCheckpointTag = ".mpitrain-checkpoint";

// What a checkpoint holds beside the model's own files (config, weights, tokenizer, args).
inline constexpr const char* kOptimizerDir = "optimizer";             // the moments, a weights directory of their own
inline constexpr const char* kOptimizerStateFile = "optimizer.json";  // in kOptimizerDir: {"step"}
inline constexpr const char* kSchedulerFile = "scheduler.json";
inline constexpr const char* kTrainerStateFile = "trainer_state.json";
std::string rng_state_file(int rank);  // "rng_state_<rank>.safetensors": that rank's generator state
bool is_rng_state_file(const std::string& name);

// A sharded save (save_mode sharded): every rank's blocks in its own file, and this index.
inline constexpr const char* kShardedIndexFile = "sharded_index.json";
inline constexpr const char* kShardedIndexFormat = "mpitrain-sharded";  // its "format" field

// The completion marker's fields: the step, the layout that saved (dp x tp = world_size) and
// the size and XXH64 of every other file of the checkpoint.
struct CompletionMarker {
  std::int64_t step = 0;
  int world_size = 1, dp = 1, tp = 1;
  nlohmann::json files = nlohmann::json::object();  // {relative path: {"size": n, "xxh64": "hex"}}

  std::string to_json_text() const;
  // Checks what a resume reads: an object; "step", "world_size", "dp" and "tp", where present,
  // non-negative integers (dp, tp and world_size positive; dp defaults to world_size, tp to 1,
  // as markers written before those fields say); "files", where present, {path: {"size":
  // integer, "xxh64": string}}. Throws CheckpointError naming `path` and the field.
  static CompletionMarker parse(const std::string& text, const std::string& path);
};

// `dir`'s marker, parsed and checked (CheckpointError naming it when missing or malformed).
CompletionMarker read_completion_marker(const std::string& dir);

}  // namespace mpitrain::checkpoint
