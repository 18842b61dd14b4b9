// Rank 0's TensorBoard log of a run (report_to=tensorboard): each metrics line under transformers' tags, in logging_dir, continued by a resume.
#include "src/train/tensorboard_log.h"

#include <unistd.h>

#include <ctime>
#include <filesystem>

namespace mpitrain::train {

namespace fs = std::filesystem;

namespace {

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0) return "localhost";
  return name;
}

}  // namespace

TensorBoardLog::TensorBoardLog(const std::string& dir, std::int64_t resumed_at,
                               std::function<void(const std::string&)> warn)
    : writer_((fs::create_directories(dir), dir), host_name()), warn_(std::move(warn)) {
  if (resumed_at >= 0) writer_.start_session(resumed_at);
}

void TensorBoardLog::write(const nlohmann::json& entry) {
  if (failed_) return;
  std::map<std::string, double> scalars;
  for (const auto& [key, value] : entry.items()) {
    if (key == "step" || !value.is_number()) continue;
    if (key.rfind("eval_", 0) == 0)
      scalars["eval/" + key.substr(5)] = value.get<double>();
    else if (key.rfind("test_", 0) == 0)
      scalars["test/" + key.substr(5)] = value.get<double>();
    else
      scalars["train/" + key] = value.get<double>();
  }
  try {
    writer_.add_scalars(entry.value("step", std::int64_t{0}), scalars);
  } catch (const std::exception& e) {
    failed_ = true;
    warn_(std::string(e.what()) + ": TensorBoard logging stops here, training goes on");
  }
}

std::string default_logging_dir(const std::string& output_dir) {
  const auto now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%b%d_%H-%M-%S", &local);
  return (fs::path(output_dir) / "runs" / (std::string(stamp) + "_" + host_name())).string();
}

std::unique_ptr<TensorBoardLog> open_tensorboard_log(const TrainingArguments& args, TrainerState& state, int rank,
                                                     bool resumed, const std::function<void(const std::string&)>& info,
                                                     const std::function<void(const std::string&)>& warn) {
  if (!args.report_to_tensorboard || rank != 0) return nullptr;
  const bool continues = resumed && !state.logging_dir.empty() && args.logging_dir.empty();
  state.logging_dir = !args.logging_dir.empty() ? args.logging_dir
                      : continues               ? state.logging_dir
                                                : default_logging_dir(args.output_dir);
  auto log = std::make_unique<TensorBoardLog>(state.logging_dir, resumed ? state.global_step : -1, warn);
  info("tensorboard: " + log->path() +
       (resumed ? " (a new file from step " + std::to_string(state.global_step) +
                      ": TensorBoard drops what earlier files logged after it)"
                : ""));
  return log;
}

}  // namespace mpitrain::train
