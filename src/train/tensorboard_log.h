// Rank 0's TensorBoard log of a run (report_to=tensorboard): each metrics line under transformers' tags, in logging_dir, continued by a resume.
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "src/tensorboard/event_file.h"
#include "src/train/trainer_state.h"
#include "src/train/training_arguments.h"

namespace mpitrain::train {

class TensorBoardLog {
 public:
  // A new event file in `dir` (made if missing); `resumed_at` >= 0 starts it with a SessionLog
  // START at that step, so that TensorBoard drops the earlier files' events after it.
  TensorBoardLog(const std::string& dir, std::int64_t resumed_at, std::function<void(const std::string&)> warn);
  // Each number of a metrics line as transformers' TensorBoardCallback writes it: eval_x as
  // eval/x, test_x as test/x, any other as train/x, at the line's step. A failed write (a full
  // disk) is one warning, and the log stops: TensorBoard never stops the training.
  void write(const nlohmann::json& entry);
  const std::string& path() const { return writer_.path(); }

 private:
  tensorboard::EventFileWriter writer_;
  std::function<void(const std::string&)> warn_;
  bool failed_ = false;
};

// transformers' default logging_dir: <output_dir>/runs/<Mon><dd>_<HH-MM-SS>_<host>.
std::string default_logging_dir(const std::string& output_dir);

// Rank 0 with report_to=tensorboard: the log, in args.logging_dir, else the directory a resumed
// checkpoint recorded (state.logging_dir), else the default; recorded in `state`. Null otherwise.
std::unique_ptr<TensorBoardLog> open_tensorboard_log(const TrainingArguments& args, TrainerState& state, int rank,
                                                     bool resumed, const std::function<void(const std::string&)>& info,
                                                     const std::function<void(const std::string&)>& warn);

}  // namespace mpitrain::train
