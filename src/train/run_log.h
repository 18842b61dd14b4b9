// What a run reports: rank 0's console progress, metrics.jsonl, each rank's log file, and the loss plot.
#pragma once

#include <chrono>
#include <fstream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

namespace mpitrain::train {

// Thread-safe: a background checkpoint writer (async_save) logs beside the training loop.
class RunLog {
 public:
  // Every rank opens <output_dir>/logs/rank-N.log; rank 0 also appends to metrics.jsonl.
  RunLog(const std::string& output_dir, int rank, bool progress_bar);
  ~RunLog();

  void info(const std::string& line);  // rank log; echoed to the console on rank 0
  void warn(const std::string& line);  // rank log; console on rank 0 as a warning
  void metrics(const nlohmann::json& entry);  // one JSON line (rank 0), and the rank log
  // Rank 0: makes metrics.jsonl the story of this run: `history` (the entries of the checkpoint
  // resumed from; none for a fresh start), one JSON line each. Earlier lines not among them (an
  // earlier run's, a continuation no longer followed) are appended to logs/metrics-dropped.jsonl
  // first, under a line saying why: moved, not lost. Returns how many moved.
  std::size_t restart_metrics(const nlohmann::json& history, const std::string& why);
  // Redraws the progress line (rank 0, terminals only) or prints it at log points elsewhere.
  void progress(std::int64_t step, std::int64_t total, double loss, double lr, double tokens_per_second);
  bool draws_progress() const { return bar_; }  // whether progress() shows anything (worth reading the loss)
  void finish_progress();
  // For a start that failed: closes the files and removes those this RunLog created (its rank
  // log, metrics.jsonl, logs/ once empty), so a refused start leaves nothing of its own behind.
  void discard_created_files();

 private:
  std::string metrics_path() const;
  std::string rank_log_path() const;

  int rank_;
  std::string output_dir_;
  bool bar_;
  std::ofstream rank_log_, metrics_;
  struct {
    bool logs_dir = false, rank_log = false, metrics = false;
  } created_;  // by this RunLog: what discard_created_files removes
  std::chrono::steady_clock::time_point start_;
  bool bar_drawn_ = false;
  std::recursive_mutex mutex_;
};

// An SVG of the train and eval loss curves from transformers-style log_history entries.
void write_loss_plot(const std::string& path, const nlohmann::json& log_history);

}  // namespace mpitrain::train
