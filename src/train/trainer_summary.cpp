// The run summary the last metrics line carries: timing, memory and traffic, checkpoint and tensor-parallel figures.
#include "src/train/trainer.h"

#include "runtime/device/process_memory.h"
#include "runtime/parallel/tensor_parallel.h"

namespace mpitrain::train {

using nlohmann::json;

json Trainer::summary(double runtime) const {
  auto summary = metrics_->summary(state_, runtime, exposed_comm_->seconds());
  summary.update(model_->memory_and_traffic(optimizer_->state_bytes(), steps_run_));
  // This rank's host peak (what estimate-memory's figures are checked against).
  summary["memory_peak_resident_bytes"] = device::peak_resident_bytes();
  if (checkpointer_->checkpoints_saved() > 0) {
    summary["checkpoints_saved"] = checkpointer_->checkpoints_saved();
    summary["checkpoint_blocking_seconds"] = round_to(checkpointer_->blocking_seconds(), 4);
  }
  if (local_checkpoints_ && local_checkpoints_->saves() > 0) {
    summary["local_checkpoints_saved"] = local_checkpoints_->saves();
    summary["local_checkpoint_blocking_seconds"] = round_to(local_checkpoints_->waited_seconds(), 4);
  }
  if (mesh_->tp_size() > 1) {
    // The tp group's f/g all-reduces (including eval's): what the bench compares with raw MPI.
    const auto tp = model_->model().tensor_parallel().stats();
    const double calls = static_cast<double>(std::max<std::int64_t>(tp.calls, 1));
    summary["tp_allreduce_fraction"] = round_to(tp.seconds / runtime, 4);
    summary["tp_allreduce_calls"] = tp.calls;
    summary["tp_allreduce_mean_bytes"] = round_to(static_cast<double>(tp.bytes) / calls, 1);
    summary["tp_allreduce_mean_us"] = round_to(tp.seconds / calls * 1e6, 1);
  }
  return summary;
}

}  // namespace mpitrain::train
