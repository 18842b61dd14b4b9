// What the run's data takes from its arguments: where the tokenizer comes from, the classifier's labels, the data settings.
#pragma once

#include <string>

#include "src/data/training_data.h"
#include "src/train/training_arguments.h"

namespace mpitrain::train {

// data.tokenizer_name_or_path, else the model's own directory where it holds tokenizer files,
// else "" (the byte tokenizer). Data is prepared with it; saved models carry its files.
std::string tokenizer_source(const RunArguments& args);
// A classifier's labels as its config gives them (id2label / label2id / num_labels, as
// transformers reads them), for the data's "label" fields to be checked and mapped.
data::LabelSet label_set(const RunArguments& args);
data::DataSettings data_settings(const RunArguments& args);

}  // namespace mpitrain::train
