// Where a save's time goes: a per-thread clock charged stage by stage (a nested stage's time is carved out of the enclosing one's), and the bytes this rank wrote.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <string>

namespace mpitrain::checkpoint {

enum class SaveStage : int {
  kSnapshot,    // the host copy an async save trains on beside (the caller's)
  kPlanning,    // who writes what, file plans, the shared-directory probe
  kStaging,     // copies off a GPU and dtype conversions (beside the writes, on their own thread)
  kWrite,       // bytes into files, sends and receives of gathered blocks
  kFsync,       // fsync of files and directories
  kChecksums,   // hashing the staged files for the marker
  kCommit,      // the marker and the rename into place
  kRotation,    // save_total_limit's deletions
  kUploadHook,  // starting post_save_command (and waiting for the previous one)
  kCount
};
inline constexpr std::size_t kSaveStages = static_cast<std::size_t>(SaveStage::kCount);
const char* save_stage_name(SaveStage stage);  // "planning", "upload_hook", ...

// Seconds of the steady clock since `start`: every save's and load's durations.
inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

struct SaveTimes {
  std::array<double, kSaveStages> seconds{};
  std::uint64_t bytes_written = 0;

  double& operator[](SaveStage stage) { return seconds[static_cast<std::size_t>(stage)]; }
  double operator[](SaveStage stage) const { return seconds[static_cast<std::size_t>(stage)]; }
};

// While alive, the calling thread's stage timers and written bytes go into `times`; without
// one a timer costs a thread-local read. Nests (the inner one records until it ends).
class RecordSaveTimes {
 public:
  explicit RecordSaveTimes(SaveTimes& times);
  ~RecordSaveTimes();
  RecordSaveTimes(const RecordSaveTimes&) = delete;
  RecordSaveTimes& operator=(const RecordSaveTimes&) = delete;

 private:
  SaveTimes* previous_times_;
  int previous_stage_;
};

// Charges the time of its scope to `stage` on this thread's record (if any); an enclosing
// timer's stage is paused meanwhile.
class StageTimer {
 public:
  explicit StageTimer(SaveStage stage);
  ~StageTimer();
  StageTimer(const StageTimer&) = delete;
  StageTimer& operator=(const StageTimer&) = delete;

 private:
  int enclosing_ = -1;
  bool active_ = false;
};

// Adds to this thread's record: bytes written, or seconds of a stage timed elsewhere (the
// staging thread's copies).
void count_bytes_written(std::uint64_t bytes);
void add_stage_seconds(SaveStage stage, double seconds);

}  // namespace mpitrain::checkpoint
