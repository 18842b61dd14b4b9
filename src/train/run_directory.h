// output_dir's policy: its checks, the start-over plan, which checkpoint a resume takes, rotation and the best checkpoint; the decisions are pure functions over a listing.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "runtime/checkpoint/checkpoint_dir.h"
#include "src/train/training_arguments.h"

namespace mpitrain::train {

// What output_dir holds, as the decisions below see it.
struct RunDirectoryListing {
  std::vector<checkpoint::CheckpointEntry> complete;  // oldest first
  std::vector<std::string> incomplete;                // own incomplete checkpoints and staging dirs
  std::vector<std::string> foreign;                   // checkpoint-N entries mpitrain did not write

  static RunDirectoryListing of(const std::string& output_dir);
};

// Where a resume_from_checkpoint path lies relative to output_dir (filesystem facts, found once).
struct ResumePathPlace {
  bool is_output_dir = false;             // the checkpoint resumed from is output_dir itself
  std::int64_t step_in_output_dir = -1;   // it is output_dir's complete checkpoint of this step
  static ResumePathPlace of(const std::string& output_dir, const ResumeFrom& resume, const RunDirectoryListing& listing);
};

// What overwrite_output_dir deletes once the run has started well, and the warning saying so.
struct StartOver {
  std::vector<std::string> paths;
  std::string what;
};

// A run that does not resume (or resumes from an earlier checkpoint of output_dir) and would
// save checkpoints beside an earlier run's: refused (std::runtime_error saying what to do),
// or with overwrite_output_dir the plan to delete them. Checkpoint-N entries mpitrain did not
// write are refused or deleted alike; a resume from output_dir itself is refused.
StartOver plan_start_over(const TrainingArguments& args, const RunDirectoryListing& listing, const ResumePathPlace& place);

// The checkpoint a run resumes from ("" for none): the latest complete one for true (an error
// where there is none) and auto (none where there is none), or the path given, which must be
// a complete checkpoint. Throws comm::AgreedError naming the problem.
std::string resolve_resume_path(const TrainingArguments& args, const RunDirectoryListing& listing);

// A checkpoint resume_from_checkpoint names by path: throws comm::AgreedError where it is
// missing, not a directory or not complete (no completion marker).
void require_resumable_checkpoint(const std::string& path);

// The directory a path names, written with a trailing slash or not ("checkpoint-2/").
std::string directory_named_by(const std::string& path);

// A best checkpoint recorded before the run directory moved: found by its name beside the
// checkpoint resumed from; `best` itself where it is complete or not found there either.
std::string best_checkpoint_beside(const std::string& resumed_from, const std::string& best);

// Why every rank needs output_dir on a shared filesystem (empty: only rank 0 writes there).
std::string why_output_dir_is_shared(const RunArguments& args);

// Creates output_dir if need be; throws where it is a file, cannot be created or is not writable.
void check_output_dir(const std::string& dir);

// Rank 0, after a commit: deletes what save_total_limit rotates out (never `best`), each
// renamed aside first (.deleting-checkpoint-N) so that it leaves the listing at once and a
// killed delete leaves no checkpoint-N behind; a delete that fails is a warning, not the end.
void rotate_checkpoints(const std::string& output_dir, std::int64_t limit, const std::string& best,
                        const std::function<void(const std::string&)>& info,
                        const std::function<void(const std::string&)>& warn);

}  // namespace mpitrain::train
