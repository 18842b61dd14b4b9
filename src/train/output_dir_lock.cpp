// One job per output_dir: a lock file naming its holder (host, pid, start, Slurm job), a heartbeat for other nodes to judge it by, and the take-over of a lock its job left behind.
#include "src/train/output_dir_lock.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "runtime/checkpoint/input_file.h"

namespace mpitrain::train {

namespace {

using nlohmann::json;

std::string host_name() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0) return "unknown-host";
  return name;
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

std::string env_or_empty(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

double seconds_of(const struct timespec& t) { return static_cast<double>(t.tv_sec) + t.tv_nsec * 1e-9; }

std::string error_text() { return std::strerror(errno); }

// The lock file's text and mtime, or nullopt where it is gone.
struct LockFileState {
  std::string text;
  double mtime = 0;
};
std::optional<LockFileState> read_lock_file(const std::string& path) {
  struct stat info {};
  if (::lstat(path.c_str(), &info) != 0) {
    if (errno == ENOENT) return std::nullopt;
    throw std::runtime_error("output_dir lock " + path + ": " + error_text());
  }
  if (!S_ISREG(info.st_mode)) throw std::runtime_error("output_dir lock " + path + " is not a regular file");
  return LockFileState{checkpoint::read_regular_file(path), seconds_of(info.st_mtim)};
}

}  // namespace

LockHolder LockHolder::this_process() {
  LockHolder me;
  me.host = host_name();
  me.pid = static_cast<long>(::getpid());
  me.process_start_ticks = train::process_start_ticks(me.pid).value_or(0);
  me.started = utc_now();
  me.slurm_job_id = env_or_empty("SLURM_JOB_ID");
  const auto restarts = env_or_empty("SLURM_RESTART_COUNT");
  me.slurm_restart_count = restarts.empty() ? 0 : std::atoi(restarts.c_str());
  return me;
}

std::string LockHolder::to_json_text() const {
  return json{{"host", host}, {"pid", pid}, {"process_start_ticks", process_start_ticks}, {"started", started},
              {"slurm_job_id", slurm_job_id}, {"slurm_restart_count", slurm_restart_count}}
             .dump() +
         "\n";
}

LockHolder LockHolder::parse(const std::string& text) {
  try {
    const auto j = json::parse(text);
    LockHolder h;
    h.host = j.at("host").get<std::string>();
    h.pid = j.at("pid").get<long>();
    h.process_start_ticks = j.at("process_start_ticks").get<unsigned long long>();
    h.started = j.at("started").get<std::string>();
    h.slurm_job_id = j.at("slurm_job_id").get<std::string>();
    h.slurm_restart_count = j.at("slurm_restart_count").get<int>();
    return h;
  } catch (const json::exception& e) {
    throw std::runtime_error(std::string("not an mpitrain lock (") + e.what() + ")");
  }
}

std::string LockHolder::describe() const {
  std::string text = "host " + host + ", pid " + std::to_string(pid) + ", started " + started;
  if (!slurm_job_id.empty())
    text += ", Slurm job " + slurm_job_id +
            (slurm_restart_count > 0 ? " (restart " + std::to_string(slurm_restart_count) + ")" : "");
  return text;
}

bool LockHolder::is_same_process(const LockHolder& other) const {
  return host == other.host && pid == other.pid && process_start_ticks == other.process_start_ticks;
}

std::optional<unsigned long long> process_start_ticks(long pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!std::getline(stat, text)) return std::nullopt;
  // "pid (comm) state ...": comm may hold spaces and parentheses; the fields follow the last ')'.
  const auto close = text.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(text.substr(close + 2));
  std::string field;
  // A zombie has ended: only its parent has not collected it yet.
  if (!(fields >> field) || field == "Z" || field == "X") return std::nullopt;
  // Field 22 of the whole line, the 19th after the state: starttime.
  for (int i = 0; i < 19 && fields >> field; ++i) {
  }
  try {
    return std::stoull(field);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::string why_lock_is_stale(const LockHolder& holder, const LockHolder& asking, double heartbeat_age_s,
                              double stale_after_s,
                              const std::function<std::optional<unsigned long long>(long)>& process_start_ticks_of) {
  if (holder.host == asking.host) {
    const auto start = process_start_ticks_of(holder.pid);
    if (!start) return "its process is gone";
    if (*start != holder.process_start_ticks) return "its pid now belongs to another process";
    return "";
  }
  if (!holder.slurm_job_id.empty() && holder.slurm_job_id == asking.slurm_job_id &&
      holder.slurm_restart_count < asking.slurm_restart_count)
    return "Slurm requeued the job: that run has ended";
  if (heartbeat_age_s > stale_after_s)
    return "no heartbeat from host " + holder.host + " for " + std::to_string(static_cast<long>(heartbeat_age_s)) + " s";
  return "";
}

OutputDirLock::OutputDirLock(const std::string& output_dir, const std::function<void(const std::string&)>& warn,
                             Timing timing)
    : path_(output_dir + "/" + kFileName), me_(LockHolder::this_process()), timing_(timing) {
  // Written whole beside the lock first: link(2) then makes it the lock in one step, and its
  // mtime is the filesystem's "now" that a holder's heartbeat is measured against.
  const std::string mine = path_ + "." + me_.host + "." + std::to_string(me_.pid);
  {
    std::ofstream out(mine, std::ios::trunc);
    out << me_.to_json_text();
    if (!out.flush()) throw std::runtime_error("output_dir lock: cannot write " + mine);
  }
  struct Cleanup {
    const std::string& path;
    ~Cleanup() { ::unlink(path.c_str()); }
  } cleanup{mine};
  struct stat written {};
  if (::stat(mine.c_str(), &written) != 0) throw std::runtime_error("output_dir lock: " + mine + ": " + error_text());
  const double filesystem_now = seconds_of(written.st_mtim);
  for (int attempt = 0; attempt < 5; ++attempt) {
    if (::link(mine.c_str(), path_.c_str()) == 0) {
      heartbeat_ = std::thread([this] { beat(); });
      return;
    }
    if (errno != EEXIST) throw std::runtime_error("output_dir lock " + path_ + " cannot be created: " + error_text());
    const auto held = read_lock_file(path_);
    if (!held) continue;  // released meanwhile: try again
    LockHolder holder;
    try {
      holder = LockHolder::parse(held->text);
    } catch (const std::exception& e) {
      throw std::runtime_error("output_dir lock " + path_ + ": " + e.what() + "; delete it if no job uses " + output_dir);
    }
    const auto stale = why_lock_is_stale(holder, me_, filesystem_now - held->mtime, timing_.stale_after_s,
                                         process_start_ticks);
    if (stale.empty())
      throw std::runtime_error("output_dir " + output_dir + " is in use by another mpitrain job (" + holder.describe() +
                               "); give this job another output_dir, or stop that one (its lock: " + path_ + ")");
    // Moved aside, not deleted: of two jobs taking the same stale lock over, one moves it and
    // the other finds it gone and tries again. What was moved must be the lock judged stale.
    const std::string aside = path_ + ".stale." + me_.host + "." + std::to_string(me_.pid);
    if (::rename(path_.c_str(), aside.c_str()) != 0) continue;
    const auto moved = read_lock_file(aside);
    if (moved && moved->text != held->text) {
      ::rename(aside.c_str(), path_.c_str());  // another job's fresh lock: back it goes
      continue;
    }
    ::unlink(aside.c_str());
    warn("output_dir " + output_dir + ": took over the lock of a job that is gone (" + holder.describe() + ": " + stale +
         ")");
  }
  throw std::runtime_error("output_dir lock " + path_ + ": other jobs keep taking it; is another job starting there?");
}

OutputDirLock::~OutputDirLock() {
  {
    std::lock_guard<std::mutex> guard(mutex_);
    stopping_ = true;
  }
  stop_.notify_all();
  if (heartbeat_.joinable()) heartbeat_.join();
  try {
    const auto held = read_lock_file(path_);
    if (held && LockHolder::parse(held->text).is_same_process(me_)) ::unlink(path_.c_str());
  } catch (const std::exception&) {
    // Not ours any more, or unreadable: left for its owner.
  }
}

void OutputDirLock::beat() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stop_.wait_for(lock, std::chrono::duration<double>(timing_.heartbeat_s), [this] { return stopping_; }))
    ::utimensat(AT_FDCWD, path_.c_str(), nullptr, 0);  // now, by the filesystem's clock
}

}  // namespace mpitrain::train
