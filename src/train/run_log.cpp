// What a run reports: rank 0's console progress, metrics.jsonl, each rank's log file, and the loss plot.
#include "src/train/run_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "runtime/checkpoint/atomic_file.h"

namespace mpitrain::train {

namespace fs = std::filesystem;

namespace {

std::string timestamp() {
  const auto now = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", std::localtime(&now));
  return buf;
}

std::string duration_text(double seconds) {
  const auto s = static_cast<long>(std::max(0.0, seconds));
  char buf[32];
  std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  return buf;
}

// Appends `text` to `path` and flushes it to disk, starting on a line of its own even after a
// write cut short.
void append_durably(const std::string& path, std::string text) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error(path + ": cannot open (" + std::strerror(errno) + ")");
  char last = '\n';
  const off_t size = ::lseek(fd, 0, SEEK_END);
  if (size > 0 && ::pread(fd, &last, 1, size - 1) == 1 && last != '\n') text.insert(text.begin(), '\n');
  std::size_t done = 0;
  while (done < text.size()) {
    const auto wrote = ::write(fd, text.data() + done, text.size() - done);
    if (wrote < 0 && errno == EINTR) continue;
    if (wrote <= 0) break;
    done += static_cast<std::size_t>(wrote);
  }
  const bool ok = done == text.size() && ::fsync(fd) == 0;
  const int error = errno;
  ::close(fd);
  if (!ok) throw std::runtime_error(path + ": cannot write (" + std::strerror(error) + ")");
}

}  // namespace

RunLog::RunLog(const std::string& output_dir, int rank, bool progress_bar)
    : rank_(rank),
      output_dir_(output_dir),
      bar_(progress_bar && rank == 0 && ::isatty(STDERR_FILENO)),
      start_(std::chrono::steady_clock::now()) {
  created_.logs_dir = fs::create_directories(fs::path(output_dir) / "logs");
  const fs::path rank_log = rank_log_path();
  // A FIFO or device would block the open (the other ranks then wait in a collective).
  for (const auto& path : {rank_log, fs::path(metrics_path())})
    if (fs::exists(path) && !fs::is_regular_file(path))
      throw std::runtime_error(path.string() + ": is not a regular file");
  created_.rank_log = !fs::exists(rank_log);
  rank_log_.open(rank_log, std::ios::app);
  if (rank == 0) {
    created_.metrics = !fs::exists(metrics_path());
    metrics_.open(metrics_path(), std::ios::app);
  }
}

std::string RunLog::rank_log_path() const {
  return (fs::path(output_dir_) / "logs" / ("rank-" + std::to_string(rank_) + ".log")).string();
}

void RunLog::discard_created_files() {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  finish_progress();
  rank_log_.close();
  metrics_.close();
  std::error_code ignored;  // best effort: the start's own error is what the user must see
  if (created_.metrics) fs::remove(metrics_path(), ignored);
  if (created_.rank_log) fs::remove(rank_log_path(), ignored);
  // Only once empty: another rank's log may still be there (it removes it, then tries too).
  if (created_.logs_dir || created_.rank_log) fs::remove(fs::path(output_dir_) / "logs", ignored);
}

std::string RunLog::metrics_path() const { return (fs::path(output_dir_) / "metrics.jsonl").string(); }

RunLog::~RunLog() { finish_progress(); }

void RunLog::info(const std::string& line) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  rank_log_ << timestamp() << " [info] " << line << std::endl;
  if (rank_ == 0) {
    finish_progress();
    std::cout << line << std::endl;
  }
}

void RunLog::warn(const std::string& line) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  rank_log_ << timestamp() << " [warning] " << line << std::endl;
  if (rank_ == 0) {
    finish_progress();
    std::cerr << "mpitrain: warning: " << line << std::endl;
  }
}

void RunLog::metrics(const nlohmann::json& entry) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  rank_log_ << timestamp() << " [metrics] " << entry.dump() << std::endl;
  if (rank_ != 0) return;
  metrics_ << entry.dump() << std::endl;
  if (!bar_) std::cout << entry.dump() << std::endl;
}

std::size_t RunLog::restart_metrics(const nlohmann::json& history, const std::string& why) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  if (rank_ != 0) return 0;
  const auto path = metrics_path();
  std::string kept;
  std::map<std::string, int> to_keep;  // each history line, as many times as it occurs
  for (const auto& entry : history) {
    const auto line = entry.dump();
    kept += line + "\n";
    ++to_keep[line];
  }
  std::string moved;
  std::size_t moved_lines = 0;
  {
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
      if (line.empty()) continue;
      if (auto it = to_keep.find(line); it != to_keep.end() && it->second > 0) {
        --it->second;
        continue;
      }
      moved += line + "\n";
      ++moved_lines;
    }
  }
  // The moved lines are on disk before metrics.jsonl loses them (a kill in between leaves
  // them in both).
  if (moved_lines > 0) {
    const nlohmann::json header = {{"moved_from", "metrics.jsonl"}, {"at", timestamp()}, {"why", why}};
    append_durably((fs::path(output_dir_) / "logs" / "metrics-dropped.jsonl").string(), header.dump() + "\n" + moved);
  }
  metrics_.close();
  checkpoint::write_file_atomically(path, kept);
  metrics_.open(path, std::ios::app);
  return moved_lines;
}

void RunLog::progress(std::int64_t step, std::int64_t total, double loss, double lr, double tokens_per_second) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  if (!bar_) return;
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double eta = step > 0 ? elapsed / static_cast<double>(step) * static_cast<double>(total - step) : 0;
  const int width = 30;
  const int filled = total > 0 ? static_cast<int>(width * step / total) : width;
  std::ostringstream line;
  line << "\r[" << std::string(static_cast<std::size_t>(filled), '#')
       << std::string(static_cast<std::size_t>(width - filled), '.') << "] " << step << "/" << total << " loss "
       << std::fixed << std::setprecision(4) << loss << " lr " << std::scientific << std::setprecision(2) << lr
       << " " << std::fixed << std::setprecision(0) << tokens_per_second << " tok/s eta " << duration_text(eta)
       << "   ";
  std::cerr << line.str() << std::flush;
  bar_drawn_ = true;
}

void RunLog::finish_progress() {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  if (bar_drawn_) std::cerr << "\n";
  bar_drawn_ = false;
}

void write_loss_plot(const std::string& path, const nlohmann::json& log_history) {
  std::vector<std::pair<double, double>> train, eval;
  for (const auto& e : log_history) {
    if (!e.contains("step")) continue;
    const double step = e["step"].get<double>();
    if (e.contains("loss")) train.emplace_back(step, e["loss"].get<double>());
    if (e.contains("eval_loss")) eval.emplace_back(step, e["eval_loss"].get<double>());
  }
  const double width = 640, height = 400, left = 60, right = 20, top = 30, bottom = 50;
  double max_step = 1, min_loss = 1e30, max_loss = -1e30;
  for (const auto* series : {&train, &eval})
    for (const auto& [s, l] : *series) {
      max_step = std::max(max_step, s);
      min_loss = std::min(min_loss, l);
      max_loss = std::max(max_loss, l);
    }
  if (min_loss > max_loss) min_loss = 0, max_loss = 1;
  if (max_loss - min_loss < 1e-9) max_loss = min_loss + 1;
  auto x = [&](double s) { return left + s / max_step * (width - left - right); };
  auto y = [&](double l) { return top + (max_loss - l) / (max_loss - min_loss) * (height - top - bottom); };
  std::ostringstream svg;
  svg << std::fixed << std::setprecision(2);
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
      << "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      << "<text x=\"" << width / 2 << "\" y=\"18\" text-anchor=\"middle\">training and eval loss</text>\n"
      << "<line x1=\"" << left << "\" y1=\"" << height - bottom << "\" x2=\"" << width - right << "\" y2=\""
      << height - bottom << "\" stroke=\"black\"/>\n<line x1=\"" << left << "\" y1=\"" << top << "\" x2=\"" << left
      << "\" y2=\"" << height - bottom << "\" stroke=\"black\"/>\n";
  for (int i = 0; i <= 4; ++i) {
    const double l = min_loss + (max_loss - min_loss) * i / 4.0;
    svg << "<text x=\"" << left - 6 << "\" y=\"" << y(l) + 4 << "\" text-anchor=\"end\">" << l << "</text>\n";
    const double s = max_step * i / 4.0;
    svg << "<text x=\"" << x(s) << "\" y=\"" << height - bottom + 16 << "\" text-anchor=\"middle\">"
        << static_cast<long>(s) << "</text>\n";
  }
  svg << "<text x=\"" << width / 2 << "\" y=\"" << height - 10 << "\" text-anchor=\"middle\">step</text>\n";
  auto polyline = [&](const std::vector<std::pair<double, double>>& series, const char* color) {
    if (series.empty()) return;
    svg << "<polyline fill=\"none\" stroke=\"" << color << "\" stroke-width=\"2\" points=\"";
    for (const auto& [s, l] : series) svg << x(s) << "," << y(l) << " ";
    svg << "\"/>\n";
    for (const auto& [s, l] : series)
      if (series.size() < 60) svg << "<circle cx=\"" << x(s) << "\" cy=\"" << y(l) << "\" r=\"2.5\" fill=\"" << color << "\"/>\n";
  };
  polyline(train, "#1f77b4");
  polyline(eval, "#d62728");
  svg << "<text x=\"" << width - right - 110 << "\" y=\"" << top + 14 << "\" fill=\"#1f77b4\">train loss</text>\n"
      << "<text x=\"" << width - right - 110 << "\" y=\"" << top + 30 << "\" fill=\"#d62728\">eval loss</text>\n</svg>\n";
  checkpoint::write_file_atomically(path, svg.str());
}

}  // namespace mpitrain::train
