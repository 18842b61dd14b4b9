// trainer_state.json with transformers' schema, plus the few fields exact resume needs.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace mpitrain::train {

struct TrainerState {
  std::int64_t global_step = 0;
  double epoch = 0;
  std::int64_t max_steps = 0;
  double num_train_epochs = 0;
  std::int64_t logging_steps = 0, eval_steps = 0, save_steps = 0, train_batch_size = 0;
  std::optional<double> best_metric;
  std::string best_model_checkpoint;  // empty = none (null in JSON)
  nlohmann::json log_history = nlohmann::json::array();
  // Not in transformers' schema: the running loss since the last log, so that a resumed run
  // logs exactly what an uninterrupted one does.
  double loss_since_log = 0;
  std::int64_t steps_since_log = 0;
  std::int64_t tokens_seen = 0;            // this process's estimate, for tokens_per_second only
  std::int64_t num_input_tokens_seen = 0;  // include_num_input_tokens_seen: exact, over every dp rank
  std::string logging_dir;                 // report_to=tensorboard: where the events go, kept by a resume

  nlohmann::json to_json() const;
  static TrainerState from_json(const nlohmann::json& j);
};

}  // namespace mpitrain::train
