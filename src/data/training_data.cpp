// The data a run trains and evaluates on: prepared from data.source into output_dir when needed (again when the source or settings changed), opened and checked against the task.
#include "src/data/training_data.h"

#include <filesystem>
#include <stdexcept>

#include "runtime/comm/agreement.h"
#include "src/data/preparation_record.h"
#include "src/data/prepare_data.h"

namespace mpitrain::data {

namespace fs = std::filesystem;

namespace {

// The tokenizer data is prepared with: the one settings name, else the byte tokenizer.
std::unique_ptr<TextEncoder> encoder_for(const DataSettings& s) {
  return s.tokenizer_dir.empty() ? byte_encoder() : tokenizer_encoder(s.tokenizer_dir);
}

// Rank 0: makes `train_file` from the source where it is missing (or, prepared in output_dir,
// stale).
void prepare_if_needed(const DataSettings& s, const std::string& train_file, bool in_output_dir,
                       const std::function<void(const std::string&)>& info) {
  nlohmann::json record;
  std::unique_ptr<TextEncoder> encoder;
  if (in_output_dir) {
    encoder = encoder_for(s);
    nlohmann::json settings = {{"task", s.task}, {"eval_every", s.eval_every}, {"tokenizer", encoder->identity()}};
    if (s.task != "causal_lm") settings["max_length"] = s.max_length;
    if (s.task == "classification") settings["label2id"] = s.labels.label2id;
    if (s.task == "sft") settings["completion_only_loss"] = s.completion_only_loss;
    record = preparation_record(s.source, settings);
    if (prepared_from(train_file, record)) return;
    if (fs::exists(train_file)) {
      info(train_file + " was prepared from another source or settings, or not to the end: preparing it again");
      fs::remove(train_file);
    }
  } else if (fs::exists(train_file)) {
    return;
  }
  if (s.source.empty()) throw std::runtime_error(train_file + ": data file does not exist (and no data.source to prepare it from)");
  if (!encoder) encoder = encoder_for(s);
  info("preparing " + train_file + " from " + s.source + " with " +
       (s.tokenizer_dir.empty() ? std::string("the byte tokenizer") : s.tokenizer_dir + "/tokenizer.json"));
  const auto report =
      s.task == "classification" ? prepare_classification(s.source, train_file, *encoder, s.max_length, s.eval_every, s.labels)
      : s.task == "sft" ? prepare_prompt_completion(s.source, train_file, *encoder, s.max_length, s.eval_every,
                                                    s.completion_only_loss)
                        : prepare_text_corpus(s.source, train_file, *encoder, s.eval_every);
  info("prepared " + std::to_string(report.documents) + " documents: " +
       std::to_string(report.train_tokens + report.train_rows) + " train and " +
       std::to_string(report.eval_tokens + report.eval_rows) + " eval tokens/rows");
  if (in_output_dir) write_preparation_record(train_file, record);
}

}  // namespace

TrainingData open_training_data(comm::Communicator& world, const DataSettings& s, const std::string& output_dir,
                                const std::function<void(const std::string&)>& info) {
  const bool in_output_dir = s.train_file.empty();
  if (in_output_dir && s.source.empty()) throw comm::AgreedError("data.train_file or data.source is required");
  const auto train_file = in_output_dir ? (fs::path(output_dir) / "data" / "prepared.h5").string() : s.train_file;
  // Rank 0 prepares missing data; every rank learns whether it worked.
  comm::run_agreed(world, [&] {
    if (world.rank() == 0) prepare_if_needed(s, train_file, in_output_dir, info);
  });
  TrainingData data;
  comm::run_agreed(world, [&] {
    data.train = std::make_unique<Hdf5Dataset>(train_file, "train", s.seq_len);
    if (s.with_eval) data.eval = std::make_unique<Hdf5Dataset>(train_file, "eval", s.seq_len);
    const auto holds = data.train->is_classification() ? "classification" : data.train->has_token_labels() ? "sft" : "causal_lm";
    if (s.task != holds)
      throw std::runtime_error(train_file + ": holds " +
                               (data.train->is_classification()  ? std::string("classification rows")
                                : data.train->has_token_labels() ? std::string("prompt/completion rows")
                                                                 : std::string("a token stream")) +
                               " but data.task is '" + s.task + "'");
  });
  return data;
}

}  // namespace mpitrain::data
