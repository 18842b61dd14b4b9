// Named points in the save path where a test can have this process killed (SIGKILL), to prove a crash at that moment loses nothing.
#include "runtime/checkpoint/crash_point.h"

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <map>
#include <mutex>
#include <unistd.h>

namespace mpitrain::checkpoint {

void crash_point(const std::string& name, int rank) {
  static const char* spec = std::getenv("MPITRAIN_CRASH_AT");
  if (!spec) return;
  const std::string target(spec);
  const auto count_at = target.find('#');
  const auto at = target.find('@');
  if (target.substr(0, std::min(at, count_at)) != name) return;
  if (at != std::string::npos && std::atoi(target.c_str() + at + 1) != rank) return;
  // The point may be reached from the training thread and a background writer alike.
  static std::mutex mutex;
  static std::map<std::string, long> reached;
  const long times = count_at == std::string::npos ? 1 : std::atol(target.c_str() + count_at + 1);
  {
    const std::lock_guard<std::mutex> lock(mutex);
    if (++reached[name] != times) return;
  }
  ::kill(::getpid(), SIGKILL);
}

}  // namespace mpitrain::checkpoint
