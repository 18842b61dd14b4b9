// Ends the job when an operation that completes on its own (a GPU collective) has not completed within the collective timeout.
#include "runtime/comm/completion_watchdog.h"

#include <cstdio>

#include "runtime/comm/collective_timeout.h"

namespace mpitrain::comm {

CompletionWatchdog::CompletionWatchdog(Expired expired, std::chrono::milliseconds poll)
    : expired_(std::move(expired)), poll_(poll) {
  if (!expired_)
    expired_ = [](const std::string& what, double waited) {
      char line[96];
      std::snprintf(line, sizeof line, " did not complete within %.0f s (a rank is missing or stuck)", waited);
      abort_job(what + line);
    };
  thread_ = std::thread([this] { run(); });
}

CompletionWatchdog::~CompletionWatchdog() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void CompletionWatchdog::watch(std::string what, std::function<bool()> done) {
  std::lock_guard<std::mutex> lock(mutex_);
  operations_.push_back({std::move(what), std::move(done), std::chrono::steady_clock::now()});
}

std::size_t CompletionWatchdog::in_flight() {
  std::lock_guard<std::mutex> lock(mutex_);
  return operations_.size();
}

void CompletionWatchdog::run() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopping_) {
    wake_.wait_for(lock, poll_, [&] { return stopping_; });
    while (!stopping_ && !operations_.empty()) {
      auto& oldest = operations_.front();
      if (oldest.done()) {
        operations_.pop_front();
        continue;
      }
      const double limit = collective_timeout_seconds();
      const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - oldest.launched).count();
      if (limit > 0 && waited > limit) {
        const auto what = oldest.what;
        operations_.pop_front();
        lock.unlock();
        expired_(what, waited);
        lock.lock();
      }
      break;  // the oldest is still running: the later ones are behind it
    }
  }
}

}  // namespace mpitrain::comm
