// A training checkpoint as one call: what it holds, written with the commit protocol (staging, weights, moments, state, RNG, checksums, marker, rename), and read back.
#include "runtime/checkpoint/training_checkpoint.h"

#include <filesystem>
#include <optional>

#include "runtime/checkpoint/assign_writers.h"
#include "runtime/checkpoint/checkpoint_dir.h"
#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/checkpoint_schema.h"
#include "runtime/checkpoint/checksums.h"
#include "runtime/checkpoint/crash_point.h"
#include "runtime/checkpoint/json_file.h"
#include "runtime/checkpoint/remove_tree.h"
#include "runtime/checkpoint/safetensors_writer.h"
#include "runtime/checkpoint/save_timing.h"
#include "runtime/checkpoint/torch_tensors.h"
#include "runtime/comm/agreement.h"
#include "runtime/comm/string_collectives.h"

namespace mpitrain::checkpoint {

namespace fs = std::filesystem;

namespace {

// Collective: {path: {size, xxh64}} of every file in `staging`. Every rank hashes a share of
// the files (balanced by size); every rank gets them all.
nlohmann::json checksum_staged_files(const std::string& staging, comm::Communicator& comm) {
  std::vector<FileChecksum> mine;
  comm::run_agreed(comm, [&] {
    const auto files = checkpoint_files(staging);
    std::vector<std::uint64_t> sizes;
    for (const auto& f : files) sizes.push_back(fs::file_size(fs::path(staging) / f));
    const auto owner = balance_writers(sizes, comm.size());
    for (std::size_t i = 0; i < files.size(); ++i)
      if (owner[i] == comm.rank()) mine.push_back(checksum_file(staging, files[i]));
  });
  nlohmann::json merged = nlohmann::json::object();
  for (const auto& text : comm::allgather_strings(comm, checksums_to_json(mine).dump()))
    merged.update(nlohmann::json::parse(text));
  return merged;
}

// Rank 0's small files and every rank's RNG state, into the staging directory.
void write_state_files(comm::Communicator& comm, const std::string& staging, const TrainingCheckpoint& c,
                       const TrainingCheckpointOptions& options) {
  if (comm.rank() == 0) {
    if (options.write_model_files) options.write_model_files(staging);
    if (!c.only_model) {
      write_json_file((fs::path(staging) / kOptimizerDir / kOptimizerStateFile).string(), c.optimizer_state);
      write_json_file((fs::path(staging) / kSchedulerFile).string(), c.scheduler);
    }
    write_json_file((fs::path(staging) / kTrainerStateFile).string(), c.trainer_state);
  }
  if (!c.only_model)
    write_safetensors((fs::path(staging) / rng_state_file(comm.rank())).string(), {tensor_bytes(c.rng_key, c.rng)});
}

}  // namespace

std::string write_training_checkpoint(comm::Communicator& comm, const std::string& root, const TrainingCheckpoint& c,
                                      const TrainingCheckpointOptions& options) {
  const auto staging = staging_dir(root, c.step);
  std::optional<StageTimer> preparing(SaveStage::kPlanning);
  comm::run_agreed(comm, [&] {
    if (comm.rank() != 0) return;
    for (const auto& stale : incomplete_checkpoints(root)) {
      // What a rotation set aside and could not delete (an immutable file) was warned about
      // then; it costs disk space, never this save.
      if (fs::path(stale).filename().string().rfind(kDeletingPrefix, 0) == 0) {
        try {
          remove_tree(stale);
        } catch (const std::exception&) {
        }
        continue;
      }
      remove_tree(stale);
    }
    prepare_staging_dir(root, c.step);
  });
  preparing.reset();
  save_distributed(comm, staging, c.weights, options.save);
  crash_point("checkpoint.weights_saved", comm.rank());
  if (!c.only_model) {
    auto moments = options.save;  // the optimizer directory is the runtime's own: its usual file names
    moments.single_file = kSingleWeightsFile;
    save_distributed(comm, (fs::path(staging) / kOptimizerDir).string(), c.moments, moments);
  }
  comm::run_agreed(comm, [&] {
    const StageTimer writing(SaveStage::kWrite);
    write_state_files(comm, staging, c, options);
  });
  CompletionMarker marker;
  marker.step = c.step;
  marker.world_size = comm.size();
  marker.dp = c.dp;
  marker.tp = c.tp;
  {
    const StageTimer hashing(SaveStage::kChecksums);
    marker.files = checksum_staged_files(staging, comm);
  }
  crash_point("checkpoint.before_commit", comm.rank());
  comm::run_agreed(comm, [&] {
    if (comm.rank() != 0) return;
    std::optional<StageTimer> committing(SaveStage::kCommit);
    const auto committed = commit_staging_dir(root, c.step, marker.to_json_text());
    committing.reset();
    if (options.after_commit) options.after_commit(committed);
  });
  return (fs::path(root) / checkpoint_name(c.step)).string();
}

TrainingCheckpointReader::TrainingCheckpointReader(std::string dir)
    : dir_(std::move(dir)), marker_(read_completion_marker(dir_)) {}

void TrainingCheckpointReader::verify_checksums(int which, int count) const {
  checkpoint::verify_checksums(dir_, marker_, which, count);
}

nlohmann::json TrainingCheckpointReader::trainer_state() const {
  return read_json_file((fs::path(dir_) / kTrainerStateFile).string());
}

bool TrainingCheckpointReader::has_optimizer_state() const { return fs::exists(optimizer_dir()); }

std::string TrainingCheckpointReader::optimizer_dir() const { return (fs::path(dir_) / kOptimizerDir).string(); }

nlohmann::json TrainingCheckpointReader::optimizer_state() const {
  return read_json_file((fs::path(optimizer_dir()) / kOptimizerStateFile).string());
}

torch::Tensor TrainingCheckpointReader::rng_state(int rank, const std::string& key, bool* found_key) const {
  if (found_key) *found_key = true;
  const auto path = fs::path(dir_) / rng_state_file(rank);
  if (rank < 0 || !fs::exists(path)) return {};
  SafetensorsFile file(path.string());
  if (!file.header().find(key)) {
    if (found_key) *found_key = false;
    return {};
  }
  return read_tensor(file, file.entry(key));
}

}  // namespace mpitrain::checkpoint
