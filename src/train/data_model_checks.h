// Before the first step, in words: data the model cannot read (another task, a larger vocabulary, sequences past learned positions).
#pragma once

#include <vector>

#include "src/data/hdf5_dataset.h"
#include "src/models/model.h"
#include "src/train/run_log.h"

namespace mpitrain::train {

// Throws std::runtime_error naming the data file and the model's key where the data's vocab
// exceeds the model's, or its sequences run past learned position embeddings (GPT-2, BERT);
// sequences past rotary positions (Llama) are a warning in `log`. Null datasets are skipped.
void check_data_fits_model(const models::HfModel& model, const std::vector<const data::Hdf5Dataset*>& datasets,
                           RunLog& log);

}  // namespace mpitrain::train
