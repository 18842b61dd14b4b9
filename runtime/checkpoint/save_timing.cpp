// Where a save's time goes: a per-thread clock charged stage by stage (a nested stage's time is carved out of the enclosing one's), and the bytes this rank wrote.
#include "runtime/checkpoint/save_timing.h"

namespace mpitrain::checkpoint {

namespace {

using Clock = std::chrono::steady_clock;

// This thread's record: where times go, the stage running (-1: none) and since when.
thread_local SaveTimes* recording = nullptr;
thread_local int running = -1;
thread_local Clock::time_point since;

void charge_running(Clock::time_point now) {
  if (recording && running >= 0)
    recording->seconds[static_cast<std::size_t>(running)] += std::chrono::duration<double>(now - since).count();
  since = now;
}

}  // namespace

const char* save_stage_name(SaveStage stage) {
  switch (stage) {
    case SaveStage::kSnapshot: return "snapshot";
    case SaveStage::kPlanning: return "planning";
    case SaveStage::kStaging: return "staging";
    case SaveStage::kWrite: return "write";
    case SaveStage::kFsync: return "fsync";
    case SaveStage::kChecksums: return "checksums";
    case SaveStage::kCommit: return "commit";
    case SaveStage::kRotation: return "rotation";
    case SaveStage::kUploadHook: return "upload_hook";
    case SaveStage::kCount: break;
  }
  return "?";
}

RecordSaveTimes::RecordSaveTimes(SaveTimes& times)
    : previous_times_(recording), previous_stage_(running) {
  charge_running(Clock::now());
  recording = &times;
  running = -1;
}

RecordSaveTimes::~RecordSaveTimes() {
  charge_running(Clock::now());
  recording = previous_times_;
  running = previous_stage_;
  since = Clock::now();  // the enclosing record's stage resumes now
}

StageTimer::StageTimer(SaveStage stage) {
  if (!recording) return;
  active_ = true;
  charge_running(Clock::now());
  enclosing_ = running;
  running = static_cast<int>(stage);
}

StageTimer::~StageTimer() {
  if (!active_ || !recording) return;
  charge_running(Clock::now());
  running = enclosing_;
}

void count_bytes_written(std::uint64_t bytes) {
  if (recording) recording->bytes_written += bytes;
}

void add_stage_seconds(SaveStage stage, double seconds) {
  if (recording) (*recording)[stage] += seconds;
}

}  // namespace mpitrain::checkpoint
