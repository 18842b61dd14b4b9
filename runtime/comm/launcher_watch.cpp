// A rank started by mpirun stops within a fraction of a second when its launcher dies (SIGKILL to mpirun), instead of training on and committing checkpoints nobody waits for.
#include "runtime/comm/launcher_watch.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>

namespace mpitrain::comm {

namespace {

// Whether the parent is Open MPI's launcher or daemon (a singleton's parent is the user's shell).
bool parent_is_open_mpi(pid_t parent) {
  std::ifstream comm("/proc/" + std::to_string(parent) + "/comm");
  std::string name;
  std::getline(comm, name);
  return name == "mpirun" || name == "mpiexec" || name == "orterun" || name == "orted" || name == "prterun" ||
         name == "prted";
}

}  // namespace

void stop_when_launcher_dies(double interval_s) {
  if (!std::getenv("OMPI_COMM_WORLD_RANK")) return;
  static std::once_flag started;
  std::call_once(started, [interval_s] {
    const pid_t launcher = ::getppid();
    if (!parent_is_open_mpi(launcher)) return;
    std::thread([launcher, interval_s] {
      while (::getppid() == launcher) std::this_thread::sleep_for(std::chrono::duration<double>(interval_s));
      const std::string line = "mpitrain: the launcher (pid " + std::to_string(launcher) + ") is gone: stopping\n";
      [[maybe_unused]] const auto written = ::write(STDERR_FILENO, line.data(), line.size());
      std::_Exit(137);
    }).detach();
  });
}

}  // namespace mpitrain::comm
