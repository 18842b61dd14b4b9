// Before the first step, in words: data the model cannot read (another task, a larger vocabulary, sequences past learned positions).
#include "src/train/data_model_checks.h"

#include <stdexcept>

namespace mpitrain::train {

void check_data_fits_model(const models::HfModel& model, const std::vector<const data::Hdf5Dataset*>& datasets,
                           RunLog& log) {
  const auto& train = *datasets.front();
  // Classification rows need a classifier, token streams and prompt/completion rows a causal LM.
  if (train.is_classification() == model.is_causal_lm())
    throw std::runtime_error(train.path() + ": holds " +
                             (train.is_classification() ? "classification rows" : "causal-LM data") + " but the model is " +
                             model.architecture() + " (data.task and the model disagree)");
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

}  // namespace mpitrain::train
