// A training checkpoint as one call: what it holds, written with the commit protocol (staging, weights, moments, state, RNG, checksums, marker, rename), and read back.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "runtime/checkpoint/checkpoint_schema.h"
#include "runtime/checkpoint/distributed_save.h"
#include "runtime/comm/communicator.h"

namespace mpitrain::checkpoint {

// What one rank contributes to checkpoint-<step>. `weights` and `moments` follow
// save_distributed's contract (same names, shapes and dtypes on every rank); the JSON parts
// are written by rank 0 only, from its values.
struct TrainingCheckpoint {
  std::int64_t step = 0;
  int dp = 1, tp = 1;  // the layout that saves, recorded in the marker for a resume at another
  std::vector<LocalTensor> weights;
  bool only_model = false;  // save_only_model: no moments, optimizer, scheduler or RNG state
  std::vector<LocalTensor> moments;  // laid out like their parameters
  nlohmann::json optimizer_state, scheduler, trainer_state;
  std::string rng_key;  // the generator's name in the RNG file ("torch_cpu", "torch_cuda")
  torch::Tensor rng;    // this rank's generator state
};

struct TrainingCheckpointOptions {
  DistributedSaveOptions save;  // for the weights and the moments alike
  // Rank 0, into the staging directory before the checksums: the model's own files (config,
  // tokenizer, training args), which the runtime does not know.
  std::function<void(const std::string& staging)> write_model_files;
  // Rank 0, once committed, inside the commit's agreed step (rotation, an upload hook): a
  // failure there is every rank's.
  std::function<void(const std::string& committed)> after_commit;
};

// Collective over `comm` (its size is the marker's world_size). Writes `contents` into
// <root>/.tmp-checkpoint-<step> (leftover incomplete checkpoints under root removed first),
// every file checksummed by the ranks in shares, then renames it to checkpoint-<step> and
// writes the completion marker last: a crash at any moment leaves either no checkpoint-<step>
// or a complete one, and the previous ones whole. Returns the committed path; errors are
// raised on every rank with the same message.
std::string write_training_checkpoint(comm::Communicator& comm, const std::string& root, const TrainingCheckpoint& contents,
                                      const TrainingCheckpointOptions& options);

// Reading back a committed checkpoint's training state (the weights and moments are read
// with CheckpointReader over dir() and optimizer_dir(), at any layout).
class TrainingCheckpointReader {
 public:
  explicit TrainingCheckpointReader(std::string dir);  // reads and checks the marker
  const std::string& dir() const { return dir_; }
  const CompletionMarker& marker() const { return marker_; }
  // Every file the marker lists, as saved; this reader's share (index % count == which).
  void verify_checksums(int which, int count) const;
  nlohmann::json trainer_state() const;  // CheckpointError naming the file when missing or malformed
  bool has_optimizer_state() const;      // false for a save_only_model checkpoint
  std::string optimizer_dir() const;
  nlohmann::json optimizer_state() const;
  // The generator state `rank` saved under `key`; undefined when that rank saved none (another
  // layout's rank) or none for this kind of device (`found_key` false then).
  torch::Tensor rng_state(int rank, const std::string& key, bool* found_key = nullptr) const;

 private:
  std::string dir_;
  CompletionMarker marker_;
};

}  // namespace mpitrain::checkpoint
