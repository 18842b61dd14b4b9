// What the run's data takes from its arguments: where the tokenizer comes from, the classifier's labels, the data settings.
#include "src/train/data_settings.h"

#include "src/train/model_files.h"

namespace mpitrain::train {

std::string tokenizer_source(const RunArguments& args) {
  if (!args.data.tokenizer_name_or_path.empty()) return args.data.tokenizer_name_or_path;
  const auto& source = args.model.model_name_or_path;
  return !source.empty() && holds_tokenizer_files(source) ? source : "";
}

data::LabelSet label_set(const RunArguments& args) {
  data::LabelSet labels;
  if (!args.data.classification) return labels;
  nlohmann::json config;
  try {
    config = args.model.built_config();
  } catch (const std::exception&) {
    return labels;  // the model's own loading names what is wrong with it, on every rank
  }
  if (!config.is_object()) return labels;
  if (config.contains("label2id") && config["label2id"].is_object()) labels.label2id = config["label2id"];
  if (config.contains("id2label") && config["id2label"].is_object() && !config["id2label"].empty())
    labels.num_labels = static_cast<std::int64_t>(config["id2label"].size());
  else
    labels.num_labels = config.value("num_labels", std::int64_t{2});
  return labels;
}

data::DataSettings data_settings(const RunArguments& args) {
  const auto& d = args.data;
  return {d.train_file, d.source,    tokenizer_source(args),   d.task, d.seq_len,
          d.max_length, d.eval_every, args.training.evaluates(), label_set(args), d.completion_only_loss,
          d.packing,    d.pad_to_max_length};
}

}  // namespace mpitrain::train
