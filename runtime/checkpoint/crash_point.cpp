// Named points in the save path where a test can have this process killed (SIGKILL), to prove a crash at that moment loses nothing.
#include "runtime/checkpoint/crash_point.h"

#include <csignal>
#include <cstdlib>
#include <unistd.h>

namespace mpitrain::checkpoint {

void crash_point(const std::string& name, int rank) {
  static const char* spec = std::getenv("MPITRAIN_CRASH_AT");
  if (!spec) return;
  const std::string target(spec);
  const auto at = target.find('@');
  if (target.substr(0, at) != name) return;
  if (at != std::string::npos && std::atoi(target.c_str() + at + 1) != rank) return;
  ::kill(::getpid(), SIGKILL);
}

}  // namespace mpitrain::checkpoint
