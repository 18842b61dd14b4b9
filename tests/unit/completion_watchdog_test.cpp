// CompletionWatchdog: a GPU collective that never completes ends the job within the collective timeout; completed ones never do.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "runtime/comm/collective_timeout.h"
#include "runtime/comm/completion_watchdog.h"

namespace mpitrain::comm {
namespace {

using namespace std::chrono_literals;

struct Expiries {
  std::mutex mutex;
  std::vector<std::pair<std::string, double>> seen;
  CompletionWatchdog::Expired handler() {
    return [this](const std::string& what, double waited) {
      std::lock_guard<std::mutex> lock(mutex);
      seen.emplace_back(what, waited);
    };
  }
  std::size_t count() {
    std::lock_guard<std::mutex> lock(mutex);
    return seen.size();
  }
};

bool eventually(const std::function<bool()>& condition, std::chrono::milliseconds limit = 5000ms) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (condition()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return condition();
}

TEST(CompletionWatchdog, CompletedOperationsAreDroppedAndNeverExpire) {
  set_collective_timeout_seconds(0.2);
  Expiries expiries;
  CompletionWatchdog watchdog(expiries.handler(), 10ms);
  for (int i = 0; i < 3; ++i) watchdog.watch("op " + std::to_string(i), [] { return true; });
  EXPECT_TRUE(eventually([&] { return watchdog.in_flight() == 0; }));
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(expiries.count(), 0u);
}

TEST(CompletionWatchdog, AStuckOperationExpiresNamedAfterTheTimeoutAndOnlyThen) {
  set_collective_timeout_seconds(0.3);
  Expiries expiries;
  CompletionWatchdog watchdog(expiries.handler(), 10ms);
  const auto start = std::chrono::steady_clock::now();
  watchdog.watch("NCCL allreduce #7 on 'dp' (4096 bytes)", [] { return false; });
  watchdog.watch("NCCL allreduce #8 on 'dp' (4096 bytes)", [] { return false; });
  ASSERT_TRUE(eventually([&] { return expiries.count() >= 1; }));
  EXPECT_GE(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 0.3);
  std::lock_guard<std::mutex> lock(expiries.mutex);
  EXPECT_EQ(expiries.seen.front().first, "NCCL allreduce #7 on 'dp' (4096 bytes)");  // the oldest first
  EXPECT_GE(expiries.seen.front().second, 0.3);
}

TEST(CompletionWatchdog, ASlowOperationThatCompletesInTimeIsFine) {
  // A timeout far beyond the 150 ms the operation takes: a loaded 2-core machine may hold this
  // thread up for a while, and that must not read as the operation's time.
  set_collective_timeout_seconds(3);
  Expiries expiries;
  CompletionWatchdog watchdog(expiries.handler(), 10ms);
  std::atomic<bool> finished{false};
  watchdog.watch("slow", [&] { return finished.load(); });
  std::this_thread::sleep_for(150ms);
  finished = true;
  EXPECT_TRUE(eventually([&] { return watchdog.in_flight() == 0; }));
  std::this_thread::sleep_for(3500ms);  // past the timeout: nothing expires after completion
  EXPECT_EQ(expiries.count(), 0u);
}

TEST(CompletionWatchdog, ATimeoutOfZeroWaitsForever) {
  set_collective_timeout_seconds(0);
  Expiries expiries;
  CompletionWatchdog watchdog(expiries.handler(), 10ms);
  watchdog.watch("stuck", [] { return false; });
  std::this_thread::sleep_for(400ms);
  EXPECT_EQ(expiries.count(), 0u);
  EXPECT_EQ(watchdog.in_flight(), 1u);
}

}  // namespace
}  // namespace mpitrain::comm
