// The output_dir lock: a live holder refused by name, a dead one's lock taken over, another host judged by its heartbeat, released at the end.
#include "src/train/output_dir_lock.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "tests/unit/test_files.h"

namespace mpitrain::train {
namespace {

namespace fs = std::filesystem;
using testing::ScratchDir;

std::string lock_path(const ScratchDir& dir) { return dir / OutputDirLock::kFileName; }

// The pid of a process that has ended (and been reaped).
long dead_pid() {
  const pid_t child = fork();
  if (child == 0) _exit(0);
  waitpid(child, nullptr, 0);
  return child;
}

void set_mtime_seconds_ago(const std::string& path, double seconds) {
  struct stat info {};
  ASSERT_EQ(stat(path.c_str(), &info), 0);
  struct timespec times[2] = {info.st_atim, info.st_mtim};
  times[1].tv_sec -= static_cast<time_t>(seconds);
  ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), times, 0), 0);
}

double mtime_of(const std::string& path) {
  struct stat info {};
  stat(path.c_str(), &info);
  return static_cast<double>(info.st_mtim.tv_sec) + info.st_mtim.tv_nsec * 1e-9;
}

const auto no_warning = [](const std::string& line) { FAIL() << "unexpected warning: " << line; };

TEST(OutputDirLock, IsHeldForTheRunAndReleasedAtItsEnd) {
  ScratchDir dir;
  {
    OutputDirLock lock(dir.path(), no_warning);
    const auto holder = LockHolder::parse(testing::read_bytes(lock_path(dir)));
    EXPECT_TRUE(holder.is_same_process(LockHolder::this_process()));
    EXPECT_EQ(holder.pid, static_cast<long>(getpid()));
    // Nothing else is left beside it (the file it was linked from is gone).
    int entries = 0;
    for ([[maybe_unused]] const auto& entry : fs::directory_iterator(dir.path())) ++entries;
    EXPECT_EQ(entries, 1);
  }
  EXPECT_FALSE(fs::exists(lock_path(dir)));
}

TEST(OutputDirLock, ALiveHolderIsRefusedByName) {
  ScratchDir dir;
  OutputDirLock first(dir.path(), no_warning);
  try {
    OutputDirLock second(dir.path(), no_warning);
    FAIL() << "a second lock was taken";
  } catch (const std::runtime_error& e) {
    const std::string text = e.what();
    const auto me = LockHolder::this_process();
    EXPECT_NE(text.find("is in use by another mpitrain job (host " + me.host + ", pid " + std::to_string(me.pid)),
              std::string::npos)
        << text;
    EXPECT_EQ(text.find('\n'), std::string::npos);
  }
  EXPECT_TRUE(fs::exists(lock_path(dir)));  // the holder keeps it
}

TEST(OutputDirLock, ALockWhoseProcessIsGoneIsTakenOverWithAWarning) {
  ScratchDir dir;
  auto gone = LockHolder::this_process();
  gone.pid = dead_pid();
  testing::write_bytes(lock_path(dir), gone.to_json_text());
  std::string warning;
  {
    OutputDirLock lock(dir.path(), [&](const std::string& line) { warning = line; });
    EXPECT_NE(warning.find("took over the lock of a job that is gone (host " + gone.host + ", pid " +
                           std::to_string(gone.pid)),
              std::string::npos)
        << warning;
    EXPECT_NE(warning.find("its process is gone"), std::string::npos) << warning;
    EXPECT_TRUE(LockHolder::parse(testing::read_bytes(lock_path(dir))).is_same_process(LockHolder::this_process()));
  }
  EXPECT_FALSE(fs::exists(lock_path(dir)));
}

TEST(OutputDirLock, AReusedPidDoesNotPassForTheHolder) {
  ScratchDir dir;
  auto earlier = LockHolder::this_process();  // this pid, but another process's start
  earlier.process_start_ticks += 1;
  testing::write_bytes(lock_path(dir), earlier.to_json_text());
  std::string warning;
  OutputDirLock lock(dir.path(), [&](const std::string& line) { warning = line; });
  EXPECT_NE(warning.find("its pid now belongs to another process"), std::string::npos) << warning;
}

TEST(OutputDirLock, AnotherHostsLockIsLiveUntilItsHeartbeatStops) {
  ScratchDir dir;
  auto remote = LockHolder::this_process();
  remote.host = "another-node";
  remote.pid = 1;
  testing::write_bytes(lock_path(dir), remote.to_json_text());
  EXPECT_THROW(OutputDirLock(dir.path(), no_warning), std::runtime_error);  // fresh: its pid cannot be seen
  set_mtime_seconds_ago(lock_path(dir), 600);
  std::string warning;
  OutputDirLock lock(dir.path(), [&](const std::string& line) { warning = line; });
  EXPECT_NE(warning.find("no heartbeat from host another-node for 6"), std::string::npos) << warning;
}

TEST(OutputDirLock, TheHeartbeatRenewsTheLocksMtime) {
  ScratchDir dir;
  OutputDirLock lock(dir.path(), no_warning, {0.05, 120});
  set_mtime_seconds_ago(lock_path(dir), 600);
  const double old = mtime_of(lock_path(dir));
  for (int i = 0; i < 200 && mtime_of(lock_path(dir)) < old + 500; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_GT(mtime_of(lock_path(dir)), old + 500);
}

TEST(OutputDirLock, AnUnreadableLockIsAnErrorNamingIt) {
  ScratchDir dir;
  testing::write_bytes(lock_path(dir), "{\"host\": 3");
  try {
    OutputDirLock lock(dir.path(), no_warning);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(lock_path(dir) + ": not an mpitrain lock"), std::string::npos) << e.what();
  }
}

TEST(WhyLockIsStale, SlurmsRequeuedRunTakesOverItsEarlierRunsLock) {
  LockHolder holder, asking;
  holder.host = "n1";
  asking.host = "n2";
  holder.slurm_job_id = asking.slurm_job_id = "45";
  holder.slurm_restart_count = 0;
  asking.slurm_restart_count = 1;
  const auto no_process = [](long) { return std::optional<unsigned long long>(); };
  EXPECT_NE(why_lock_is_stale(holder, asking, 0, 120, no_process).find("Slurm requeued the job"), std::string::npos);
  // Another job, or the same run again: only the heartbeat tells.
  asking.slurm_restart_count = 0;
  EXPECT_EQ(why_lock_is_stale(holder, asking, 0, 120, no_process), "");
  asking.slurm_job_id = "46";
  asking.slurm_restart_count = 1;
  EXPECT_EQ(why_lock_is_stale(holder, asking, 119, 120, no_process), "");
  EXPECT_NE(why_lock_is_stale(holder, asking, 121, 120, no_process), "");
}

TEST(ProcessStartTicks, IsThatOfTheProcessAndNoneForAnEndedOne) {
  const auto mine = process_start_ticks(getpid());
  ASSERT_TRUE(mine.has_value());
  EXPECT_GT(*mine, 0u);
  EXPECT_EQ(process_start_ticks(getpid()), mine);
  EXPECT_FALSE(process_start_ticks(dead_pid()).has_value());
  // Ended but not yet collected by its parent (a rank killed under a launcher that has not
  // reaped it): gone too.
  const pid_t zombie = fork();
  if (zombie == 0) _exit(0);
  for (int i = 0; i < 500 && process_start_ticks(zombie).has_value(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  EXPECT_FALSE(process_start_ticks(zombie).has_value());
  waitpid(zombie, nullptr, 0);
}

}  // namespace
}  // namespace mpitrain::train
