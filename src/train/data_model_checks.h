// Before the first step, in words: data the model cannot read (another task, a larger vocabulary, sequences past learned positions).
#pragma once

#include <vector>

#include "src/data/hdf5_dataset.h"
#include "src/models/model.h"
#include "src/train/run_log.h"
#include "src/train/training_arguments.h"

namespace mpitrain::train {

// Throws std::runtime_error naming the data file and the model's key where the data's vocab
// exceeds the model's, or its sequences run past learned position embeddings (GPT-2, BERT);
// sequences past rotary positions (Llama) are a warning in `log`. Null datasets are skipped.
// Rows padded with one id and a classifier that reads each row's last token not of another
// (Llama's score head) are refused too: it would read the padding.
void check_data_fits_model(const models::HfModel& model, const std::vector<const data::Hdf5Dataset*>& datasets,
                           RunLog& log);

// As transformers users write `model.config.pad_token_id = tokenizer.pad_token_id`: where the
// model's config has no pad_token_id and the classification rows say what they are padded
// with, that id goes into the config the model is built from (and is saved with it), said in
// `log`. Called before the model is built.
void give_model_the_rows_pad_id(ModelArguments& model, const data::Hdf5Dataset& train, RunLog& log);

}  // namespace mpitrain::train
