// One job per output_dir: a lock file naming its holder (host, pid, start, Slurm job), a heartbeat for other nodes to judge it by, and the take-over of a lock its job left behind.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace mpitrain::train {

// The job that holds (or asks for) a lock, as the lock file records it.
struct LockHolder {
  std::string host;
  long pid = 0;
  // The process's start in clock ticks since boot (/proc/PID/stat): a pid reused by another
  // process after the holder died does not pass for the holder.
  unsigned long long process_start_ticks = 0;
  std::string started;  // UTC, ISO 8601: when the lock was taken
  std::string slurm_job_id;  // "" outside Slurm
  int slurm_restart_count = 0;

  static LockHolder this_process();
  std::string to_json_text() const;
  // Throws std::runtime_error where `text` is not a lock file's.
  static LockHolder parse(const std::string& text);
  // "host h, pid 12, started 2026-12-02T14:03:11Z, Slurm job 45": what an error names.
  std::string describe() const;
  bool is_same_process(const LockHolder& other) const;
};

// Why a lock held by `holder` is left behind by a job that is gone ("" while that job may still
// run), as judged by `asking` (this process):
// - on the same host: the holder's pid no longer runs the process that took the lock;
// - the same Slurm job restarted: Slurm ends a run before it starts the job's next one;
// - on another host (its pid cannot be seen): no heartbeat for more than `stale_after_s`.
// `process_start_ticks_of(pid)` is the start of the process with that pid now (nullopt: none).
std::string why_lock_is_stale(const LockHolder& holder, const LockHolder& asking, double heartbeat_age_s,
                              double stale_after_s,
                              const std::function<std::optional<unsigned long long>(long)>& process_start_ticks_of);
// The start of the process `pid` on this host, from /proc (nullopt: there is none, or it has
// ended and waits to be collected, a zombie).
std::optional<unsigned long long> process_start_ticks(long pid);

// Held by one process of the job (rank 0) for the run's life. The lock file is
// output_dir/.mpitrain-lock. It is created with link(2), which is atomic on local filesystems
// and on NFS alike, so two jobs never both create it. Its mtime is the heartbeat, renewed
// every `heartbeat_s` from a thread, and judged against the filesystem's own clock (a file just
// written beside it), so the nodes' clocks need not agree.
class OutputDirLock {
 public:
  struct Timing {
    double heartbeat_s = 15;
    // Above NFS's attribute cache (60 s at most by default), so a live holder's heartbeat is
    // always seen.
    double stale_after_s = 120;
  };
  static constexpr const char* kFileName = ".mpitrain-lock";

  // Takes the lock of `output_dir` (which exists). A live holder: std::runtime_error with one line
  // naming it. A lock left behind (why_lock_is_stale) is taken over and `warn` says whose it was.
  OutputDirLock(const std::string& output_dir, const std::function<void(const std::string&)>& warn, Timing timing);
  OutputDirLock(const std::string& output_dir, const std::function<void(const std::string&)>& warn)
      : OutputDirLock(output_dir, warn, Timing{}) {}
  // Stops the heartbeat and removes the lock file where it is still this process's.
  ~OutputDirLock();
  OutputDirLock(const OutputDirLock&) = delete;
  OutputDirLock& operator=(const OutputDirLock&) = delete;

  const std::string& path() const { return path_; }

 private:
  void beat();

  std::string path_;
  LockHolder me_;
  Timing timing_;
  std::mutex mutex_;
  std::condition_variable stop_;
  bool stopping_ = false;
  std::thread heartbeat_;
};

}  // namespace mpitrain::train
