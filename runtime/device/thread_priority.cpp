// Lowering the calling thread's CPU and I/O priority, for a background writer that must not slow the training beside it.
#include "runtime/device/thread_priority.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace mpitrain::device {

namespace {

// linux/ioprio.h's values (glibc has no wrapper for ioprio_set).
constexpr int kIoprioWhoProcess = 1;  // a thread id names one thread
constexpr int kIoprioClassIdle = 3;
constexpr int kIoprioClassShift = 13;

}  // namespace

std::string lower_this_thread_priority() {
  const auto thread = static_cast<id_t>(::syscall(SYS_gettid));
  std::string why;
  if (::setpriority(PRIO_PROCESS, thread, 10) != 0) why = std::string("setpriority: ") + std::strerror(errno);
  if (::syscall(SYS_ioprio_set, kIoprioWhoProcess, static_cast<int>(thread), kIoprioClassIdle << kIoprioClassShift) != 0)
    why += (why.empty() ? "" : "; ") + std::string("ioprio_set: ") + std::strerror(errno);
  return why;
}

}  // namespace mpitrain::device
