// The data a run trains and evaluates on: prepared from data.source into output_dir when needed (again when the source or settings changed), opened and checked against the task.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "runtime/comm/communicator.h"
#include "src/data/hdf5_dataset.h"
#include "src/data/prepare_data.h"

namespace mpitrain::data {

struct DataSettings {
  std::string train_file;  // an HDF5 file; empty: prepared into <output_dir>/data/prepared.h5
  std::string source;      // text files or JSON lines to prepare from
  std::string tokenizer_dir;  // prepares with its tokenizer.json; empty: the byte tokenizer
  std::string task;        // causal_lm | classification | sft
  std::int64_t seq_len = 128, max_length = 128;
  int eval_every = 10;
  bool with_eval = false;  // open the eval split too
  LabelSet labels;         // classification: the model config's label2id and number of labels
  bool completion_only_loss = true;  // sft
  bool packing = false;              // sft: examples packed whole into max_length rows
  bool pad_to_max_length = false;    // rows: batches keep the file's whole width
};

struct TrainingData {
  std::unique_ptr<Hdf5Dataset> train, eval;  // eval null unless asked for
};

// Collective over `world` (errors agreed: every rank fails with the same line). Rank 0
// prepares missing data (and its own file in output_dir again when its record says it was
// made from other sources or settings, or not to the end); every rank then opens the file.
// `info` receives rank 0's progress lines.
TrainingData open_training_data(comm::Communicator& world, const DataSettings& settings, const std::string& output_dir,
                                const std::function<void(const std::string&)>& info);

}  // namespace mpitrain::data
