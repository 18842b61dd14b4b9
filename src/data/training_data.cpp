// The data a run trains and evaluates on: prepared from data.source into output_dir when needed (again when the source or settings changed), opened and checked against the task.
#include "src/data/training_data.h"

#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <stdexcept>

#include "runtime/comm/agreement.h"
#include "src/data/preparation_record.h"
#include "src/data/prepare_data.h"
#include "src/data/rank_encoding_share.h"

namespace mpitrain::data {

namespace fs = std::filesystem;

namespace {

// The tokenizer data is prepared with: the one settings name, else the byte tokenizer.
std::unique_ptr<TextEncoder> encoder_for(const DataSettings& s) {
  return s.tokenizer_dir.empty() ? byte_encoder() : tokenizer_encoder(s.tokenizer_dir);
}

// Rank 0: whether `train_file` must be made from the source (missing or, prepared in output_dir,
// stale: then removed here), the record that says what it was made from, and the encoder that
// record was made with (loaded once: a tokenizer.json can take a while to read).
struct PreparationPlan {
  bool needed = false;
  nlohmann::json record;
  std::unique_ptr<TextEncoder> encoder;
};

PreparationPlan plan_preparation(const DataSettings& s, const std::string& train_file, bool in_output_dir,
                                 const std::function<void(const std::string&)>& info) {
  PreparationPlan plan;
  if (in_output_dir) {
    plan.encoder = encoder_for(s);
    nlohmann::json settings = {{"task", s.task}, {"eval_every", s.eval_every}, {"tokenizer", plan.encoder->identity()}};
    if (s.task != "causal_lm") settings["max_length"] = s.max_length;
    if (s.task == "classification") settings["label2id"] = s.labels.label2id;
    if (s.task == "sft") settings["completion_only_loss"] = s.completion_only_loss, settings["packing"] = s.packing;
    plan.record = preparation_record(s.source, settings);
    if (prepared_from(train_file, plan.record)) return plan;
    if (fs::exists(train_file)) {
      info(train_file + " was prepared from another source or settings, or not to the end: preparing it again");
      fs::remove(train_file);
    }
  } else if (fs::exists(train_file)) {
    return plan;
  }
  if (s.source.empty()) throw std::runtime_error(train_file + ": data file does not exist (and no data.source to prepare it from)");
  plan.needed = true;
  return plan;
}

PrepareReport prepare(const DataSettings& s, const std::string& train_file, const TextEncoder& encoder,
                      const EncodingShare& share) {
  if (s.task == "classification")
    return prepare_classification(s.source, train_file, encoder, s.max_length, s.eval_every, s.labels, share);
  if (s.task == "sft")
    return prepare_prompt_completion(s.source, train_file, encoder, s.max_length, s.eval_every,
                                     {s.completion_only_loss, s.packing}, share);
  return prepare_text_corpus(s.source, train_file, encoder, s.eval_every, share);
}

// Collective: makes the file where the plan says so. Every rank tokenizes its share of the
// documents when every rank sees the source (rank 0 alone otherwise); rank 0 writes.
void prepare_if_planned(comm::Communicator& world, const DataSettings& s, const std::string& train_file,
                        PreparationPlan& plan, const std::function<void(const std::string&)>& info) {
  const bool sees_source = fs::exists(s.source);
  const auto seen = world.allgatherv(torch::tensor({static_cast<std::int8_t>(sees_source)}, torch::kInt8));
  const bool shared = seen.min().item<std::int8_t>() == 1;
  if (world.rank() == 0)
    info("preparing " + train_file + " from " + s.source + " with " +
         (s.tokenizer_dir.empty() ? std::string("the byte tokenizer") : s.tokenizer_dir + "/tokenizer.json") +
         (shared ? ", over " + std::to_string(world.size()) + " rank(s)" : ", on rank 0 (the others do not see the source)"));
  const auto started = std::chrono::steady_clock::now();
  const bool takes_part = shared || world.rank() == 0;
  auto& encoder = plan.encoder;  // rank 0's, where planning loaded it
  comm::run_agreed(world, [&] {
    if (takes_part && !encoder) encoder = encoder_for(s);
  });
  // The share's collectives run inside this step on every rank: what fails before them (the
  // source's listing) fails alike on ranks that see the same source.
  PrepareReport report;
  comm::run_agreed(world, [&] {
    if (!takes_part) return;
    report = shared ? prepare(s, train_file, *encoder, RankEncodingShare(world)) : prepare(s, train_file, *encoder, EncodingShare());
    if (world.rank() == 0 && !plan.record.is_null()) write_preparation_record(train_file, plan.record);
  });
  const std::chrono::duration<double> seconds = std::chrono::steady_clock::now() - started;
  if (world.rank() == 0)
    info("prepared " + std::to_string(report.documents) + " documents: " +
         std::to_string(report.train_tokens + report.train_rows) + " train and " +
         std::to_string(report.eval_tokens + report.eval_rows) +
         (s.task == "sft" && s.packing ? " eval packed rows in " : " eval tokens/rows in ") + std::to_string(seconds.count()) +
         " s");
}

}  // namespace

TrainingData open_training_data(comm::Communicator& world, const DataSettings& s, const std::string& output_dir,
                                const std::function<void(const std::string&)>& info) {
  const bool in_output_dir = s.train_file.empty();
  if (in_output_dir && s.source.empty()) throw comm::AgreedError("data.train_file or data.source is required");
  const auto train_file = in_output_dir ? (fs::path(output_dir) / "data" / "prepared.h5").string() : s.train_file;
  // Rank 0 decides whether data must be prepared; every rank learns whether that worked, and the answer.
  PreparationPlan plan;
  comm::run_agreed(world, [&] {
    if (world.rank() == 0) plan = plan_preparation(s, train_file, in_output_dir, info);
  });
  auto needed = torch::tensor({static_cast<std::int8_t>(plan.needed)}, torch::kInt8);
  world.broadcast(needed, 0);
  if (needed.item<std::int8_t>() == 1) prepare_if_planned(world, s, train_file, plan, info);
  TrainingData data;
  comm::run_agreed(world, [&] {
    data.train = std::make_unique<Hdf5Dataset>(train_file, "train", s.seq_len);
    if (s.with_eval) data.eval = std::make_unique<Hdf5Dataset>(train_file, "eval", s.seq_len);
    for (auto* dataset : {data.train.get(), data.eval.get()})
      if (dataset) dataset->set_pad_to_longest(!s.pad_to_max_length);
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
