// Before the first step, in words: data the model cannot read (another task, a larger vocabulary, sequences past learned positions).
#include "src/train/data_model_checks.h"

#include <stdexcept>

namespace mpitrain::train {

void check_data_fits_model(const models::HfModel& model, const std::vector<const data::Hdf5Dataset*>& datasets,
                           RunLog& log) {
  const auto& train = *datasets.front();
  // Classification rows need a classifier, token streams and prompt/completion rows a causal LM.
  if (train.is_classification() == model.is_causal_lm()) {
    const auto classifier = train.is_classification() ? model.sequence_classifier_architecture() : "";
    throw std::runtime_error(train.path() + ": holds " +
                             (train.is_classification() ? "classification rows" : "causal-LM data") + " but the model is " +
                             model.architecture() + " (data.task and the model disagree" +
                             (classifier.empty() ? ")"
                                                 : "; for a classifier, set its architectures to [\"" + classifier +
                                                       "\"] (model.config_overrides over a model_name_or_path))"));
  }
  const auto pad = model.pooling_pad_token_id();
  if (pad && train.pad_id() >= 0 && train.pad_id() != *pad)
    throw std::runtime_error(train.path() + ": rows are padded with id " + std::to_string(train.pad_id()) +
                             " but the model's pad_token_id is " + std::to_string(*pad) + ": " + model.architecture() +
                             " would read the padding (prepare the data with the model's tokenizer, or set "
                             "model.config_overrides.pad_token_id)");
  const auto vocab = model.config().value("vocab_size", std::int64_t{0});
  if (train.vocab_size() > vocab)
    throw std::runtime_error(train.path() + ": data vocab_size " + std::to_string(train.vocab_size()) +
                             " exceeds the model's vocab_size " + std::to_string(vocab));
  // Else the first forward fails, or Llama runs on silently: learned position tables end
  // there; rotary ones run on, on positions they never trained.
  const auto positions = model.position_limit();
  for (const auto* dataset : datasets) {
    if (!dataset || dataset->sequence_length() <= positions.length) continue;
    const auto length = std::to_string(dataset->sequence_length());
    const auto what = (dataset->is_classification()
                           ? dataset->path() + ": rows of " + length + " tokens (data.max_length when prepared) exceed"
                           : "data.seq_len " + length + " exceeds") +
                      " the model's " + positions.key + " " + std::to_string(positions.length);
    if (positions.learned) throw std::runtime_error(what + " (learned position embeddings end there)");
    log.warn(what + ": positions beyond it were never trained (rotary embeddings extrapolate)");
    return;  // said once
  }
}

void give_model_the_rows_pad_id(ModelArguments& model, const data::Hdf5Dataset& train, RunLog& log) {
  if (!train.is_classification() || train.pad_id() < 0) return;
  nlohmann::json config;
  try {
    config = model.built_config();
  } catch (const std::exception&) {
    return;  // the model's own loading names what is wrong with it, on every rank
  }
  if (!config.is_object() || (config.contains("pad_token_id") && !config["pad_token_id"].is_null())) return;
  // Inline configs are built as written; a directory's config takes the overrides.
  auto& target = model.model_name_or_path.empty() ? model.config : model.config_overrides;
  target["pad_token_id"] = train.pad_id();
  log.info("pad_token_id " + std::to_string(train.pad_id()) + ": the id the rows of " + train.path() +
           " are padded with (the model's config had none)");
}

}  // namespace mpitrain::train
