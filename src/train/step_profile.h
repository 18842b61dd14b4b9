// profile_steps: where a few training steps spend their time, by ATen operation, written as a table.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace mpitrain::train {

// Profiles `steps` training steps of this process (its operations, with LibTorch's profiler),
// starting after `skipped` steps have run, so that the first steps' allocations and thread
// start-up stay out. Not a collective: each rank profiles its own steps.
class StepProfile {
 public:
  StepProfile(std::int64_t steps, std::int64_t skipped = 2) : steps_(steps), skipped_(skipped) {}
  ~StepProfile();  // a run that ends before the last profiled step turns the profiler off
  StepProfile(const StepProfile&) = delete;
  StepProfile& operator=(const StepProfile&) = delete;

  // Around each training step. step_ends() is true once: after the last profiled step, when
  // the table is ready.
  void step_starts();
  bool step_ends();
  // The table: one line per operation, by time spent in the operation itself (not in the
  // operations it called), per step, with calls and the share of the wall time from the first
  // profiled step's start to the last one's end (what runs between steps, logging, counts too).
  const std::string& table() const { return table_; }

 private:
  std::int64_t steps_, skipped_, seen_ = 0;
  bool profiling_ = false;
  std::chrono::steady_clock::time_point started_;
  std::string table_;
};

}  // namespace mpitrain::train
