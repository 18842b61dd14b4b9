// post_save_command: rank 0 runs the user's command (an upload, say) on each completed save, in the background, never failing the run.
#pragma once

#include <functional>
#include <string>
#include <thread>

namespace mpitrain::train {

class PostSaveHook {
 public:
  // `command` empty: does nothing. `report` receives one line per finished command (called
  // on the training thread, from run() and finish()). Output goes to `log_file`.
  PostSaveHook(std::string command, std::string log_file, std::function<void(const std::string&)> report);
  ~PostSaveHook();

  // Runs `command '<dir>'` in the background once the previous run has finished (so two
  // uploads never overlap); training continues meanwhile.
  void run(const std::string& dir);
  void finish();  // waits for the running command

 private:
  std::string command_, log_file_;
  std::function<void(const std::string&)> report_;
  std::thread worker_;
  std::string running_dir_;
  int status_ = 0;
};

// `text` quoted for /bin/sh.
std::string shell_quote(const std::string& text);

}  // namespace mpitrain::train
