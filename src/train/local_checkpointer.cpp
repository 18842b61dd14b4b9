// The local checkpoint tier as the Trainer uses it: every local_save_steps steps each rank's weights, moments, RNG and trainer state into node-local memory with replicas, and the restart from the newest of them.
#include "src/train/local_checkpointer.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "runtime/checkpoint/memory_directory.h"
#include "runtime/checkpoint/save_timing.h"
#include "runtime/checkpoint/shared_directory.h"
#include "runtime/comm/agreement.h"
#include "runtime/comm/string_collectives.h"
#include "src/train/memory_check.h"

namespace mpitrain::train {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using checkpoint::seconds_since;

// Slurm names each task's node; elsewhere the host's name does (equal names share a /dev/shm).
std::string node_name() {
  const char* slurm = std::getenv("SLURMD_NODENAME");
  return slurm && *slurm ? slurm : checkpoint::host_name();
}

std::string seconds_text(double seconds) {
  char text[32];
  std::snprintf(text, sizeof text, "%.3f s", seconds);
  return text;
}

}  // namespace

LocalCheckpointer::LocalCheckpointer(const RunArguments& args, std::shared_ptr<comm::Mesh> mesh, ParallelModel& model,
                                     AdamW& optimizer, RunLog& log, at::Generator generator)
    : args_(args), mesh_(std::move(mesh)), model_(model), optimizer_(optimizer), log_(log), generator_(std::move(generator)) {
  auto& world = mesh_->world();
  const auto& t = args_.training;
  comm::run_agreed(world, [&] {
    if (t.local_save_dir.empty()) throw std::invalid_argument("training.local_save_dir is empty");
    fs::create_directories(t.local_save_dir);
    // Checked before the job's directory is made: a wrong directory is left as it was.
    if (const auto room = checkpoint::directory_room(t.local_save_dir); !room.in_memory)
      throw std::invalid_argument("training.local_save_dir " + t.local_save_dir + " is not node-local memory (" + room.kind +
                                  "): the local checkpoints need a tmpfs such as /dev/shm");
  });
  checkpoint::LocalTierOptions options;
  options.root = t.local_save_dir;
  // The run the states belong to, as rank 0 names it: one job directory on every node.
  options.owner = comm::broadcast_string(world, fs::weakly_canonical(fs::absolute(t.output_dir)).string(), 0);
  options.node = node_name();
  layout_ = describe_layout();
  options.layout = layout_;
  options.copies = t.local_replicas;
  // Its own communicator: a commit's exchanges run in the background, beside training's collectives.
  auto comm = world.cpu_communicator().split(0, world.rank(), "local");
  comm::run_agreed(world, [&] { tier_ = std::make_unique<checkpoint::LocalTier>(comm, options); });
  check_room(t.local_save_dir);
}

LocalCheckpointer::~LocalCheckpointer() {
  if (commit_thread_.joinable()) commit_thread_.join();
}

void LocalCheckpointer::save(const TrainerState& state) {
  const auto start = std::chrono::steady_clock::now();
  wait();  // one local save at a time
  const auto step = state.global_step;
  std::map<std::string, std::string> metadata = {{"format", "mpitrain-local"},
                                                 {"step", std::to_string(step)},
                                                 {"layout", layout_},
                                                 {"optimizer_step", std::to_string(optimizer_.steps())},
                                                 {"trainer_state", state.to_json().dump()}};
  // No collective here: a rank's failure to stage is agreed at the commit, in the background.
  const auto bytes = tier_->stage(step, state_tensors(), metadata);
  const double waited = seconds_since(start);
  waited_seconds_ += waited;
  ++saves_;
  log_.info("local checkpoint of step " + std::to_string(step) + ": training waited " + seconds_text(waited) + " (" +
            human_bytes(static_cast<double>(bytes)) + " of this rank's state copied; written into " + tier_->job_dir() +
            " and replicated in the background)");
  commit_thread_ = std::thread([this, step] {
    try {
      const auto begin = std::chrono::steady_clock::now();
      const auto written = tier_->commit();
      log_.info("local checkpoint of step " + std::to_string(step) + " committed on every rank in " +
                seconds_text(seconds_since(begin)) + " (" + human_bytes(static_cast<double>(written)) +
                " written here, this rank's state and the replicas it keeps)");
    } catch (...) {
      commit_error_ = std::current_exception();
    }
  });
}

void LocalCheckpointer::wait() {
  if (commit_thread_.joinable()) commit_thread_.join();
  if (commit_error_) std::rethrow_exception(std::exchange(commit_error_, nullptr));
}

std::int64_t LocalCheckpointer::restore(TrainerState& state, std::int64_t persistent_step) {
  const auto start = std::chrono::steady_clock::now();
  const auto found = tier_->newest_complete();
  const auto persistent = persistent_step < 0 ? std::string("none") : "checkpoint-" + std::to_string(persistent_step);
  // The newest state wins; of two of the same step, the local one (it loads faster).
  if (found.step < 0 || found.step < persistent_step) {
    if (found.step >= 0)
      log_.info("local tier: its newest state (step " + std::to_string(found.step) + ") is older than " + persistent +
                ": the persistent checkpoint is used");
    else if (!found.why_not.empty() && found.why_not.rfind("no local checkpoint", 0) != 0)
      log_.warn("local tier: " + found.why_not + ": resuming from " + persistent + " instead");
    tier_->remove_except(-1);  // this run's own, and stale
    return -1;
  }
  checkpoint::LocalTier::Fetched fetched;
  try {
    fetched = tier_->fetch(found.step);
    comm::run_agreed(mesh_->world(), [&] { load(*fetched.file, state); });
  } catch (const comm::AgreedError& e) {
    log_.warn("local tier: the state of step " + std::to_string(found.step) + " cannot be restored (" + e.what() +
              "): resuming from " + persistent + " instead");
    tier_->remove_except(-1);
    return -1;
  }
  std::string replicas;
  for (std::size_t r = 0; r < fetched.sent_by.size(); ++r)
    if (fetched.sent_by[r] >= 0)
      replicas += (replicas.empty() ? "" : ", ") + std::to_string(r) + " from rank " + std::to_string(fetched.sent_by[r]);
  log_.info("resumed from the local checkpoint of step " + std::to_string(found.step) + " in " +
            seconds_text(seconds_since(start)) + " (node-local memory" +
            (replicas.empty() ? std::string(", every rank its own copy") : "; replicas sent to rank(s) " + replicas) +
            "; the newest persistent checkpoint: " + persistent + ")");
  tier_->remove_except(found.step);  // kept until the next local save is complete
  return found.step;
}

void LocalCheckpointer::forget_earlier_runs() { tier_->remove_except(-1); }

void LocalCheckpointer::remove_job_states() {
  wait();
  tier_->remove_job();
}

}  // namespace mpitrain::train
