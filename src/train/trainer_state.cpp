// trainer_state.json with transformers' schema, plus the few fields exact resume needs.
#include "src/train/trainer_state.h"

namespace mpitrain::train {

nlohmann::json TrainerState::to_json() const {
  nlohmann::json j = {
      {"best_metric", best_metric ? nlohmann::json(*best_metric) : nlohmann::json(nullptr)},
      {"best_model_checkpoint", best_model_checkpoint.empty() ? nlohmann::json(nullptr) : nlohmann::json(best_model_checkpoint)},
      {"epoch", epoch},
      {"eval_steps", eval_steps},
      {"global_step", global_step},
      {"is_hyper_param_search", false},
      {"is_local_process_zero", true},
      {"is_world_process_zero", true},
      {"log_history", log_history},
      {"logging_steps", logging_steps},
      {"max_steps", max_steps},
      {"num_input_tokens_seen", num_input_tokens_seen},
      {"num_train_epochs", num_train_epochs},
      {"save_steps", save_steps},
      {"stateful_callbacks", nlohmann::json::object()},
      {"total_flos", 0},
      {"train_batch_size", train_batch_size},
      {"trial_name", nullptr},
      {"trial_params", nullptr},
      {"mpitrain", {{"loss_since_log", loss_since_log}, {"steps_since_log", steps_since_log}}}};
  if (!logging_dir.empty()) j["mpitrain"]["logging_dir"] = logging_dir;
  return j;
}

TrainerState TrainerState::from_json(const nlohmann::json& j) {
  TrainerState s;
  s.global_step = j.at("global_step").get<std::int64_t>();
  s.epoch = j.at("epoch").get<double>();
  s.max_steps = j.value("max_steps", std::int64_t{0});
  s.num_train_epochs = j.value("num_train_epochs", 0.0);
  s.logging_steps = j.value("logging_steps", std::int64_t{0});
  s.eval_steps = j.value("eval_steps", std::int64_t{0});
  s.save_steps = j.value("save_steps", std::int64_t{0});
  s.train_batch_size = j.value("train_batch_size", std::int64_t{0});
  if (j.contains("best_metric") && !j["best_metric"].is_null()) s.best_metric = j["best_metric"].get<double>();
  if (j.contains("best_model_checkpoint") && !j["best_model_checkpoint"].is_null())
    s.best_model_checkpoint = j["best_model_checkpoint"].get<std::string>();
  s.log_history = j.value("log_history", nlohmann::json::array());
  s.num_input_tokens_seen = j.value("num_input_tokens_seen", std::int64_t{0});
  if (j.contains("mpitrain")) {
    s.loss_since_log = j["mpitrain"].value("loss_since_log", 0.0);
    s.steps_since_log = j["mpitrain"].value("steps_since_log", std::int64_t{0});
    s.logging_dir = j["mpitrain"].value("logging_dir", std::string());
  }
  return s;
}

}  // namespace mpitrain::train
