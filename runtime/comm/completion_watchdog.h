// Ends the job when an operation that completes on its own (a GPU collective) has not completed within the collective timeout.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace mpitrain::comm {

// The MPI backend's waits time out on the caller's thread; a GPU collective is never waited
// for on the host (the compute stream waits for it), so a rank that never arrives would hang
// the others forever. This thread polls the oldest operation in flight (they complete in
// launch order: one stream) and, once it is older than collective_timeout_seconds(), calls
// `expired` with its description: by default abort_job, naming it.
class CompletionWatchdog {
 public:
  using Expired = std::function<void(const std::string& what, double waited_seconds)>;
  explicit CompletionWatchdog(Expired expired = {}, std::chrono::milliseconds poll = std::chrono::milliseconds(200));
  ~CompletionWatchdog();
  CompletionWatchdog(const CompletionWatchdog&) = delete;
  CompletionWatchdog& operator=(const CompletionWatchdog&) = delete;

  // `done` is called from the watchdog's thread until it returns true; then it is dropped
  // (with whatever it holds).
  void watch(std::string what, std::function<bool()> done);
  std::size_t in_flight();

 private:
  struct Operation {
    std::string what;
    std::function<bool()> done;
    std::chrono::steady_clock::time_point launched;
  };
  void run();

  Expired expired_;
  std::chrono::milliseconds poll_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Operation> operations_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace mpitrain::comm
