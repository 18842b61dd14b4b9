// The local checkpoint tier as the Trainer uses it: every local_save_steps steps each rank's weights, moments, RNG and trainer state into node-local memory with replicas, and the restart from the newest of them.
#pragma once

#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <thread>

#include "runtime/checkpoint/local_tier.h"
#include "runtime/comm/mesh.h"
#include "src/train/adamw.h"
#include "src/train/parallel_model.h"
#include "src/train/run_log.h"
#include "src/train/trainer_state.h"
#include "src/train/training_arguments.h"

namespace mpitrain::train {

class LocalCheckpointer {
 public:
  // Collective over the world: local_save_dir checked (node-local tmpfs, room for the states
  // per node within local_save_max_size), the replicas placed; the plan logged.
  LocalCheckpointer(const RunArguments& args, std::shared_ptr<comm::Mesh> mesh, ParallelModel& model, AdamW& optimizer,
                    RunLog& log, at::Generator generator);
  ~LocalCheckpointer();  // a commit in flight finishes (its collectives need every rank)

  bool due(std::int64_t step) const { return step % args_.training.local_save_steps == 0; }
  // Collective: this step's state copied into node-local memory (training waits for that only),
  // then replicated and committed in the background; the previous local save is waited for first.
  void save(const TrainerState& state);
  void wait();  // the commit in flight, if any; rethrows its (agreed) error

  // Collective, at the start: restores the newest local state saved at this layout when it is
  // no older than `persistent_step` (-1: none) into the model, the optimizer, the generator and
  // `state`, and returns its step; else -1 (the log says why), and this run's stale local
  // states are removed. The caller calls model.weights_loaded() after.
  std::int64_t restore(TrainerState& state, std::int64_t persistent_step);
  // Collective, at a start that does not restore (no resume asked, or a named checkpoint): the
  // local states an earlier run of this output_dir left are removed, never taken for this run's.
  void forget_earlier_runs();
  // Collective: the job is done (or stopped with a persistent checkpoint of its last step):
  // its local states are removed on every node.
  void remove_job_states();

  std::int64_t saves() const { return saves_; }
  double waited_seconds() const { return waited_seconds_; }

 private:
  // Collective: what a local state restores into (the same world, dp, tp, sharding, tensors).
  std::string describe_layout() const;
  std::vector<checkpoint::NamedTensor> state_tensors() const;
  std::uint64_t state_bytes() const;
  // The directory's kind and room for every rank's copies on each node; agreed errors.
  void check_room(const std::string& dir);
  // Collective: the state in `file` into the model, optimizer, generator and `state`, every
  // tensor checked before any is changed.
  void load(const checkpoint::SafetensorsFile& file, TrainerState& state);

  const RunArguments& args_;
  std::shared_ptr<comm::Mesh> mesh_;
  ParallelModel& model_;
  AdamW& optimizer_;
  RunLog& log_;
  at::Generator generator_;
  std::string layout_;  // describe_layout(), at the start
  std::unique_ptr<checkpoint::LocalTier> tier_;
  std::thread commit_thread_;
  std::exception_ptr commit_error_;
  std::int64_t saves_ = 0;
  double waited_seconds_ = 0;
};

}  // namespace mpitrain::train
