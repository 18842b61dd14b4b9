// A rank whose launcher (a process named mpirun) is killed ends at once with status 137; one whose parent is not Open MPI's is left alone.
#include "runtime/comm/launcher_watch.h"

#include <gtest/gtest.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <thread>

namespace mpitrain::comm {
namespace {

// Forks a "launcher" named `launcher_name` whose child (the "rank") starts the watch and
// sleeps 30 s; kills the launcher with SIGKILL; returns how the rank ended, as this process
// (a subreaper, so the orphaned rank becomes its child) collects it, or -2 where it still
// runs `wait_s` later.
int rank_status_after_its_launcher_is_killed(const char* launcher_name, int wait_s) {
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  int pid_pipe[2], ready_pipe[2];  // two pipes: the two writers' bytes must not interleave
  if (pipe(pid_pipe) != 0 || pipe(ready_pipe) != 0) return -1;
  const pid_t launcher = fork();
  if (launcher == 0) {
    prctl(PR_SET_NAME, launcher_name);
    const pid_t rank = fork();
    if (rank == 0) {
      setenv("OMPI_COMM_WORLD_RANK", "0", 1);
      stop_when_launcher_dies(0.01);
      [[maybe_unused]] const auto w = write(ready_pipe[1], "r", 1);  // the watch is running
      std::this_thread::sleep_for(std::chrono::seconds(30));
      _exit(0);
    }
    [[maybe_unused]] const auto w = write(pid_pipe[1], &rank, sizeof rank);
    pause();
    _exit(0);
  }
  pid_t rank = 0;
  char ready = 0;
  // The launcher reports the rank's pid; the rank says it has started its watch.
  if (read(pid_pipe[0], &rank, sizeof rank) != sizeof rank || read(ready_pipe[0], &ready, 1) != 1) return -1;
  kill(launcher, SIGKILL);
  waitpid(launcher, nullptr, 0);
  int status = 0;
  const auto start = std::chrono::steady_clock::now();
  pid_t collected = 0;
  while ((collected = waitpid(rank, &status, WNOHANG)) == 0) {
    if (std::chrono::steady_clock::now() - start > std::chrono::seconds(wait_s)) {
      kill(rank, SIGKILL);
      waitpid(rank, &status, 0);
      return -2;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (collected != rank) return -4;  // not this process's to collect: the test itself is wrong
  return WIFEXITED(status) ? WEXITSTATUS(status) : -3;
}

TEST(LauncherWatch, ARankEndsWhenItsMpirunIsKilled) {
  EXPECT_EQ(rank_status_after_its_launcher_is_killed("mpirun", 20), 137);
}

TEST(LauncherWatch, AParentThatIsNotOpenMpisIsLeftAlone) {
  // A shell the job was started from under nohup may go away: the rank trains on.
  EXPECT_EQ(rank_status_after_its_launcher_is_killed("bash", 2), -2);
}

}  // namespace
}  // namespace mpitrain::comm
