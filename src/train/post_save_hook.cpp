// post_save_command: rank 0 runs the user's command (an upload, say) on each completed save, in the background, never failing the run.
#include "src/train/post_save_hook.h"

#include <sys/wait.h>

#include <cstdlib>

namespace mpitrain::train {

std::string shell_quote(const std::string& text) {
  std::string quoted = "'";
  for (char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

PostSaveHook::PostSaveHook(std::string command, std::string log_file, std::function<void(const std::string&)> report)
    : command_(std::move(command)), log_file_(std::move(log_file)), report_(std::move(report)) {}

PostSaveHook::~PostSaveHook() { finish(); }

void PostSaveHook::run(const std::string& dir) {
  if (command_.empty()) return;
  finish();
  running_dir_ = dir;
  const auto line = command_ + " " + shell_quote(dir) + " >>" + shell_quote(log_file_) + " 2>&1";
  report_("post_save_command started for " + dir + " (output in " + log_file_ + ")");
  worker_ = std::thread([this, line] { status_ = std::system(line.c_str()); });
}

void PostSaveHook::finish() {
  if (!worker_.joinable()) return;
  worker_.join();
  const int code = WIFEXITED(status_) ? WEXITSTATUS(status_) : 128;
  if (code != 0)
    report_("warning: post_save_command failed for " + running_dir_ + " (exit status " + std::to_string(code) +
            "); the checkpoint is complete and training goes on");
  else
    report_("post_save_command finished for " + running_dir_);
}

}  // namespace mpitrain::train
