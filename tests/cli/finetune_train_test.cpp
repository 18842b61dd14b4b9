// `mpitrain train` fine-tuning: a Llama classifier (dp, tp and ZeRO-3 train it alike, its pad_token_id from the rows, data it would misread refused), batches padded to their longest row, packed prompt/completion examples, and the shipped causal-LM SFT example end to end.
#include <gtest/gtest.h>

#include <fstream>
#include <numeric>
#include <set>

#include "runtime/checkpoint/npy.h"
#include "runtime/checkpoint/safetensors_file.h"
#include "src/data/hdf5_dataset.h"
#include "src/train/classification_metrics.h"
#include "tests/cli/train_fixture.h"

namespace mpitrain {
namespace {

class ClassifierTrain : public Train {
 protected:
  // Spam rows cut to lengths from 8 to 57 bytes, so batches hold rows of different lengths.
  void SetUp() override {
    std::ifstream all(std::string(MPITRAIN_SOURCE_DIR) + "/configs/data/spam/spam.jsonl");
    std::string line, rows;
    for (int i = 0; i < 72 && std::getline(all, line); ++i) {
      auto row = json::parse(line);
      row["text"] = row["text"].get<std::string>().substr(0, 8 + static_cast<std::size_t>(i * 13) % 50);
      rows += row.dump() + "\n";
    }
    testing::write_bytes(local_ / "rows.jsonl", rows);
  }

  // A small Llama with transformers' classification head, trained from scratch on the rows
  // (the byte tokenizer: 259 ids, padded with 258).
  std::string classifier_config(const std::string& name, const json& training, const json& model = json::object(),
                                const json& data = json::object()) {
    json config = {{"model_type", "llama"}, {"architectures", {"LlamaForSequenceClassification"}},
                   {"vocab_size", 260}, {"hidden_size", 32}, {"intermediate_size", 64}, {"num_hidden_layers", 2},
                   {"num_attention_heads", 4}, {"num_key_value_heads", 2}, {"max_position_embeddings", 64},
                   {"id2label", {{"0", "ham"}, {"1", "spam"}}}, {"label2id", {{"ham", 0}, {"spam", 1}}}};
    config.update(model);
    json d = {{"train_file", ""}, {"source", local_ / "rows.jsonl"}, {"task", "classification"}, {"max_length", 64},
              {"shuffle", false}};
    d.update(data);
    return write_config(name, training, {{"model", {{"config", config}}}, {"data", d}});
  }
};

TEST_F(ClassifierTrain, DataTensorParallelAndZero3TrainItAsOneRankDoesAndItSavesAsTransformersNamesIt) {
  auto r = run(1, "train " + classifier_config("np1", {{"per_device_train_batch_size", 4}}));
  ASSERT_EQ(r.status, 0) << r.err;
  // The byte tokenizer's pad id, taken into the config as transformers users set it.
  EXPECT_NE(r.out.find("pad_token_id 258: the id the rows of"), std::string::npos) << r.out;
  const auto reference = losses(out("np1"));
  ASSERT_EQ(reference.size(), 6u);
  const std::vector<std::tuple<std::string, int, json>> layouts = {
      {"dp2", 2, {{"per_device_train_batch_size", 2}}},
      {"tp2", 2, {{"per_device_train_batch_size", 4}}},
      {"zero3", 2, {{"per_device_train_batch_size", 2}}}};
  for (const auto& [name, np, training] : layouts) {
    const auto config = classifier_config(name, training);
    const auto flags = name == "tp2" ? " --tensor_parallel_size=2" : name == "zero3" ? " --sharding=zero3" : "";
    r = run(np, "train " + config + flags);
    ASSERT_EQ(r.status, 0) << name << "\n" << r.err;
    const auto ours = losses(out(name));
    ASSERT_EQ(ours.size(), reference.size()) << name;
    for (std::size_t i = 0; i < ours.size(); ++i) EXPECT_NEAR(ours[i], reference[i], 2e-4) << name << " step " << i + 1;
    EXPECT_LT(max_weight_difference(out(name), out("np1")), 5e-5) << name;
  }
  const auto saved = json::parse(testing::read_bytes(out("np1") + "/config.json"));
  EXPECT_EQ(saved["architectures"], json::array({"LlamaForSequenceClassification"}));
  EXPECT_EQ(saved["pad_token_id"], 258);
  const checkpoint::SafetensorsFile weights(out("np1") + "/model.safetensors");
  std::set<std::string> names;
  for (const auto& e : weights.header().tensors) names.insert(e.name);
  EXPECT_TRUE(names.count("score.weight") && names.count("model.embed_tokens.weight"));
  EXPECT_FALSE(names.count("lm_head.weight"));
}

TEST_F(ClassifierTrain, TaskMetricsAreOfTheWholeEvalSetOnAnyNumberOfRanks) {
  // A model that does not move (learning rate 0) evaluated at step 1 over the 7 eval rows (3 on
  // one rank, 4 on the other at np 2): every metric is the one of its predictions over all 7,
  // computed here from `logits` on those rows.
  const json training = {{"max_steps", 1}, {"learning_rate", 0.0}, {"eval_strategy", "steps"}, {"eval_steps", 1},
                         {"per_device_eval_batch_size", 2}, {"metric_for_best_model", "f1"}};
  std::vector<json> evals;
  for (const int np : {1, 2}) {
    const auto name = "metrics_np" + std::to_string(np);
    const auto r = run(np, "train " + classifier_config(name, training));
    ASSERT_EQ(r.status, 0) << r.err;
    for (const auto& row : metrics(out(name)))
      if (row.contains("eval_loss")) evals.push_back(row);
  }
  ASSERT_EQ(evals.size(), 2u);
  data::Hdf5Dataset eval(out("metrics_np1") + "/data/prepared.h5", "eval", 64);
  ASSERT_EQ(eval.size(), 7);
  std::vector<std::int64_t> all(7);
  std::iota(all.begin(), all.end(), 0);
  const auto rows = eval.read(all);
  json inputs = {{"input_ids", json::array()}, {"attention_mask", json::array()}};
  for (std::int64_t i = 0; i < 7; ++i) {
    const auto ids = rows.input_ids[i].contiguous(), mask = rows.attention_mask[i].contiguous();
    inputs["input_ids"].push_back(std::vector<std::int64_t>(ids.data_ptr<std::int64_t>(), ids.data_ptr<std::int64_t>() + ids.numel()));
    inputs["attention_mask"].push_back(
        std::vector<std::int64_t>(mask.data_ptr<std::int64_t>(), mask.data_ptr<std::int64_t>() + mask.numel()));
  }
  testing::write_bytes(local_ / "eval_inputs.json", inputs.dump());
  const auto r = run(0, "logits " + out("metrics_np1") + " --inputs " + (local_ / "eval_inputs.json") + " --output " +
                            (local_ / "eval_logits.npy"));
  ASSERT_EQ(r.status, 0) << r.err;
  const auto logits = checkpoint::read_npy_float32(local_ / "eval_logits.npy");
  ASSERT_EQ(logits.shape, (std::vector<std::int64_t>{7, 2}));
  std::vector<std::int64_t> confusion(4, 0);
  for (std::int64_t i = 0; i < 7; ++i) {
    const int predicted = logits.data[2 * i + 1] > logits.data[2 * i] ? 1 : 0;
    ++confusion[rows.labels[i].item<std::int64_t>() * 2 + predicted];
  }
  const auto expected = train::classification_metrics(confusion, 2);
  for (const auto& name : train::classification_metric_names())
    for (const auto& row : evals) EXPECT_NEAR(row["eval_" + name].get<double>(), expected[name].get<double>(), 1e-4) << name;
  // Any other name is refused, naming those there are.
  expect_one_line_error(run(1, "train " + classifier_config("bleu", {{"eval_strategy", "steps"},
                                                                     {"metric_for_best_model", "bleu"}})),
                        "'bleu' is not an eval metric of this task (loss, accuracy, f1, f1_macro, precision, recall, "
                        "matthews_correlation)");
}

TEST_F(ClassifierTrain, TokensSeenAndLoggingOptionsAsTransformersDefinesThem) {
  // 8 steps of a global batch of 4 rows of different lengths: num_input_tokens_seen in every log
  // line counts the real tokens of every rank with "non_padding" (the same at np 1 x 4 rows and
  // np 2 x 2, and continued exactly across a resume at another number of ranks) and the padding
  // too with "all" (which then depends on how the rows are batched, as in transformers).
  const json base = {{"max_steps", 8}, {"logging_steps", 2}, {"include_num_input_tokens_seen", "non_padding"}};
  auto r = run(1, "train " + classifier_config("tokens_np1", {{"per_device_train_batch_size", 4}}));
  ASSERT_EQ(r.status, 0) << r.err;
  const auto seen = [&](const std::string& name) {
    std::vector<std::int64_t> counts;
    for (const auto& row : metrics(out(name)))
      if (row.contains("loss")) counts.push_back(row.value("num_input_tokens_seen", std::int64_t{-1}));
    return counts;
  };
  json training = base;
  training["per_device_train_batch_size"] = 4;
  r = run(1, "train " + classifier_config("all_np1", training));
  ASSERT_EQ(r.status, 0) << r.err;
  training["per_device_train_batch_size"] = 2;
  r = run(2, "train " + classifier_config("all_np2", training));
  ASSERT_EQ(r.status, 0) << r.err;
  const auto real = seen("all_np1");
  ASSERT_EQ(real.size(), 4u);
  EXPECT_EQ(seen("all_np2"), real);
  EXPECT_GT(real[0], 0);
  EXPECT_LT(real[0], real[1]);
  training["include_num_input_tokens_seen"] = "all";
  r = run(2, "train " + classifier_config("padded_np2", training));
  ASSERT_EQ(r.status, 0) << r.err;
  const auto padded = seen("padded_np2");
  ASSERT_EQ(padded.size(), 4u);
  EXPECT_GT(padded.back(), real.back());  // the rows are padded to each batch's longest
  EXPECT_EQ(seen("tokens_np1"), std::vector<std::int64_t>(6, -1));  // off by default
  // Cut at a checkpoint of step 4 at np 2, resumed at np 1: the same counts, in trainer_state.json too.
  training = base;
  training["per_device_train_batch_size"] = 2;
  training["save_strategy"] = "steps";
  training["save_steps"] = 4;
  training["max_steps"] = 4;
  r = run(2, "train " + classifier_config("cut", training));
  ASSERT_EQ(r.status, 0) << r.err;
  training["max_steps"] = 8;
  training["per_device_train_batch_size"] = 4;
  training["resume_from_checkpoint"] = out("cut") + "/checkpoint-4";
  r = run(1, "train " + classifier_config("cut", training));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(seen("cut"), real);
  const auto state = json::parse(testing::read_bytes(out("cut") + "/checkpoint-8/trainer_state.json"));
  EXPECT_EQ(state["num_input_tokens_seen"], real.back());
  // logging_first_step adds step 1; logging_strategy=epoch logs at epoch ends only (64 train rows
  // in batches of 4: 16 steps an epoch); eval_on_start evaluates before the first step.
  r = run(1, "train " + classifier_config("logging", {{"max_steps", 32}, {"per_device_train_batch_size", 4},
                                                      {"logging_strategy", "epoch"}, {"logging_first_step", true},
                                                      {"eval_on_start", true}, {"eval_strategy", "epoch"}}));
  ASSERT_EQ(r.status, 0) << r.err;
  std::vector<std::int64_t> logged, evaluated;
  for (const auto& row : metrics(out("logging"))) {
    if (row.contains("loss")) logged.push_back(row["step"].get<std::int64_t>());
    if (row.contains("eval_loss")) evaluated.push_back(row["step"].get<std::int64_t>());
  }
  EXPECT_EQ(logged, (std::vector<std::int64_t>{1, 16, 32}));
  EXPECT_EQ(evaluated, (std::vector<std::int64_t>{0, 16, 32}));
  // eval_on_start alone (eval_strategy no) still evaluates once, before the first step.
  r = run(1, "train " + classifier_config("start_only", {{"max_steps", 2}, {"eval_on_start", true}}));
  ASSERT_EQ(r.status, 0) << r.err;
  evaluated.clear();
  for (const auto& row : metrics(out("start_only")))
    if (row.contains("eval_loss")) evaluated.push_back(row["step"].get<std::int64_t>());
  EXPECT_EQ(evaluated, std::vector<std::int64_t>{0});
  expect_one_line_error(run(1, "train " + classifier_config("bad_log", {{"logging_strategy", "hourly"}})),
                        "logging_strategy");
}

TEST_F(ClassifierTrain, BatchesPaddedToTheirLongestRowTrainAsBatchesPaddedToMaxLength) {
  auto r = run(1, "train " + classifier_config("longest", {{"per_device_train_batch_size", 4}}));
  ASSERT_EQ(r.status, 0) << r.err;
  r = run(1, "train " + classifier_config("max_length", {{"per_device_train_batch_size", 4}}, json::object(),
                                          {{"pad_to_max_length", true}}));
  ASSERT_EQ(r.status, 0) << r.err;
  const auto a = losses(out("longest")), b = losses(out("max_length"));
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-5) << "step " << i + 1;
  EXPECT_LT(max_weight_difference(out("longest"), out("max_length")), 1e-5);
}

TEST_F(ClassifierTrain, RowsItWouldMisreadAndATaskItCannotDoAreRefusedOnEveryRank) {
  // Its pad_token_id is not what the rows are padded with: it would read their padding.
  expect_one_line_error(run(2, "train " + classifier_config("pad0", {}, {{"pad_token_id", 0}})),
                        "rows are padded with id 258 but the model's pad_token_id is 0: "
                        "LlamaForSequenceClassification would read the padding");
  // A causal LM given classification rows: the head to ask for is named.
  expect_one_line_error(run(2, "train " + classifier_config("causal", {}, {{"architectures", {"LlamaForCausalLM"}}})),
                        "but the model is LlamaForCausalLM (data.task and the model disagree; for a classifier, "
                        "set its architectures to [\"LlamaForSequenceClassification\"]");
}

// Every row (or the token stream) of `file`'s split, as stored.
std::vector<torch::Tensor> stored(const std::string& file, const std::string& split, std::int64_t seq_len) {
  data::Hdf5Dataset dataset(file, split, seq_len);
  dataset.set_pad_to_longest(false);
  std::vector<std::int64_t> all(static_cast<std::size_t>(dataset.size()));
  std::iota(all.begin(), all.end(), 0);
  const auto batch = dataset.read(all);
  std::vector<torch::Tensor> parts = {batch.input_ids, batch.labels};
  if (batch.attention_mask.defined()) parts.push_back(batch.attention_mask);
  return parts;
}

void expect_same_data(const std::string& a, const std::string& b, std::int64_t seq_len) {
  for (const char* split : {"train", "eval"}) {
    const auto x = stored(a, split, seq_len), y = stored(b, split, seq_len);
    ASSERT_EQ(x.size(), y.size());
    for (std::size_t i = 0; i < x.size(); ++i) EXPECT_TRUE(torch::equal(x[i], y[i])) << b << " " << split << " part " << i;
  }
}

TEST_F(ClassifierTrain, DataIsTokenizedOverTheRanksIntoTheFileOneProcessMakes) {
  // Classification rows at np 1, 2 and 3 (uneven shares): the same rows, labels and masks.
  for (int np : {1, 2, 3}) {
    const auto name = "rows_np" + std::to_string(np);
    const auto r = run(np, "train " + classifier_config(name, {{"max_steps", 0}}));
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("over " + std::to_string(np) + " rank(s)"), std::string::npos) << r.out;
  }
  for (int np : {2, 3}) expect_same_data(out("rows_np1") + "/data/prepared.h5", out("rows_np" + std::to_string(np)) + "/data/prepared.h5", 1);
  // A token stream at np 2: the file prepare-data makes in one process.
  auto config = json::parse(testing::read_bytes(write_config("stream", {{"max_steps", 0}})));
  config["data"] = {{"source", *scratch_ / "corpus"}, {"eval_every", 4}, {"seq_len", 32}};
  testing::write_bytes(local_ / "stream.json", config.dump());
  auto r = run(2, "train " + (local_ / "stream.json"));
  ASSERT_EQ(r.status, 0) << r.err;
  expect_same_data(data(), out("stream") + "/data/prepared.h5", 32);
  // A bad line in rank 1's share: one line naming it, on every rank.
  testing::write_bytes(local_ / "bad.jsonl", "{\"text\": \"a\", \"label\": 0}\n{\"text\": \"b\"}\n{\"text\": \"c\", \"label\": 1}\n");
  expect_one_line_error(run(2, "train " + classifier_config("bad", {}, json::object(), {{"source", local_ / "bad.jsonl"}})),
                        local_ / "bad.jsonl:2: needs a string \"text\" and a \"label\"");
}

TEST_F(ClassifierTrain, TheShippedSftExampleFineTunesACausalLmWithItsByteLevelTokenizerAndSavesBoth) {
  // configs/llama-bytelevel-sft.json as its README page runs it: a Llama base directory with the
  // bytelevel-bpe tokenizer (mpitrain init), prompt/completion pairs made from the shipped
  // addresses, eval and save per epoch, the best model (eval loss) loaded at the end.
  const std::string source = MPITRAIN_SOURCE_DIR, tokenizer = std::string(MPITRAIN_FIXTURES_DIR) + "/../tokenizers/bytelevel-bpe";
  auto r = run(0, "init " + source + "/configs/llama-bytelevel/config.json " + (local_ / "base") + " --tokenizer " + tokenizer);
  ASSERT_EQ(r.status, 0) << r.err;
  std::ifstream all(source + "/configs/data/sotu-sft/pairs.jsonl");
  std::string line, some;
  for (int i = 0; i < 160 && std::getline(all, line); ++i) some += line + "\n";
  testing::write_bytes(local_ / "pairs.jsonl", some);
  r = run(2, "train " + source + "/configs/llama-bytelevel-sft.json --model_name_or_path=" + (local_ / "base") +
                 " --output_dir=" + out("sft") + " --source=" + (local_ / "pairs.jsonl") +
                 " --num_train_epochs=2 --max_length=96 --per_device_train_batch_size=4 --torch_threads=1 --progress_bar=false");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("with " + (local_ / "base") + "/tokenizer.json"), std::string::npos) << r.out;
  const auto best = r.out.find("loaded the best model from ");
  ASSERT_NE(best, std::string::npos) << r.out;
  const double eval_loss = std::stod(r.out.substr(r.out.find("(loss ", best) + 6));
  const auto first = losses(out("sft"));
  ASSERT_FALSE(first.empty());
  // From about ln(6144) = 8.7 for the random start; a run that learned nothing stays there.
  EXPECT_LT(eval_loss, first.front() - 1.0) << "first training loss " << first.front();
  for (const char* file : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"})
    EXPECT_EQ(testing::read_bytes(out("sft") + "/" + file), testing::read_bytes(tokenizer + "/" + file)) << file;
  EXPECT_TRUE(fs::exists(out("sft") + "/training_args.json"));
  EXPECT_TRUE(fs::exists(out("sft") + "/generation_config.json"));
  EXPECT_EQ(run(0, "inspect " + out("sft")).status, 0);
  // It generates, its own tokenizer encoding the prompt and decoding what follows.
  r = run(0, "generate " + out("sft") + " --prompt '2001 George W Bush: We will' --max_new_tokens 8 --temperature 0");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out.rfind("2001 George W Bush: We will", 0), 0u) << r.out;
  EXPECT_GT(r.out.size(), std::string("2001 George W Bush: We will\n").size()) << r.out;
}

TEST_F(Train, PackedExamplesTrainAndEvaluateAsTheyDoUnpacked) {
  // Prompt/completion pairs of 9 to 55 tokens packed into rows of 64. Each example attends only
  // to itself, from position 0, so the eval loss of a model that does not move (learning rate 0)
  // is the unpacked one over the same examples; dp and tp runs of packed rows train alike.
  std::string lines;
  for (int i = 0; i < 60; ++i) {
    std::string prompt(2 + (i * 11) % 30, static_cast<char>('a' + i % 26)), completion(1 + (i * 5) % 17, 'z');
    lines += json{{"prompt", prompt + " says"}, {"completion", " " + completion}}.dump() + "\n";
  }
  testing::write_bytes(local_ / "pairs.jsonl", lines);
  const auto sft = [&](const std::string& name, const json& training, bool packing, const std::string& task = "sft") {
    auto config = json::parse(testing::read_bytes(write_config(
        name, training,
        {{"data", {{"train_file", ""}, {"source", local_ / "pairs.jsonl"}, {"task", task}, {"max_length", 64},
                   {"packing", packing}, {"eval_every", 4}, {"shuffle", false}}}})));
    config["model"]["config"]["vocab_size"] = 260;  // tp 2 divides it
    testing::write_bytes(local_ / (name + ".json"), config.dump());
    return local_ / (name + ".json");
  };
  const json still = {{"max_steps", 1}, {"learning_rate", 0.0}, {"eval_strategy", "steps"}, {"eval_steps", 1},
                      {"per_device_eval_batch_size", 3}};
  const auto eval_loss = [&](const std::string& name) {
    for (const auto& row : metrics(out(name)))
      if (row.contains("eval_loss")) return row["eval_loss"].get<double>();
    ADD_FAILURE() << name << ": no eval_loss";
    return 0.0;
  };
  auto r = run(1, "train " + sft("unpacked", still, false));
  ASSERT_EQ(r.status, 0) << r.err;
  r = run(1, "train " + sft("packed", still, true));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NEAR(eval_loss("packed"), eval_loss("unpacked"), 2e-4);
  // A causal LM's eval also gives its perplexity: exp of the (unrounded) token-mean loss.
  for (const auto& row : metrics(out("packed"))) {
    if (!row.contains("eval_loss")) continue;
    EXPECT_NEAR(row["eval_perplexity"].get<double>(), std::exp(row["eval_loss"].get<double>()),
                1e-4 * row["eval_perplexity"].get<double>());
  }
  // Fewer, fuller rows, each example whole: the eval split's 15 examples fill fewer rows.
  data::Hdf5Dataset packed(out("packed") + "/data/prepared.h5", "eval", 64),
      unpacked(out("unpacked") + "/data/prepared.h5", "eval", 64);
  ASSERT_TRUE(packed.is_packed());
  EXPECT_FALSE(unpacked.is_packed());
  EXPECT_EQ(unpacked.size(), 15);
  EXPECT_LT(packed.size(), 11);
  EXPECT_NE(r.out.find("eval packed rows"), std::string::npos) << r.out;
  // Trained: one rank with 4 rows, dp 2 with 2 each, tp 2 with 4, the same losses and weights.
  const json training = {{"per_device_train_batch_size", 4}, {"max_steps", 3}};
  r = run(1, "train " + sft("packed_np1", training, true));
  ASSERT_EQ(r.status, 0) << r.err;
  const auto reference = losses(out("packed_np1"));
  ASSERT_EQ(reference.size(), 3u);
  for (const auto& [name, extra] :
       {std::pair<std::string, json>{"packed_dp2", {{"per_device_train_batch_size", 2}}},
        {"packed_tp2", {{"tensor_parallel_size", 2}}}}) {
    auto config = json::parse(testing::read_bytes(sft(name, training, true)));
    for (auto it = extra.begin(); it != extra.end(); ++it)
      (it.key() == "tensor_parallel_size" ? config["parallel"] : config["training"])[it.key()] = it.value();
    testing::write_bytes(local_ / (name + ".json"), config.dump());
    r = run(2, "train " + (local_ / (name + ".json")));
    ASSERT_EQ(r.status, 0) << r.err;
    const auto ours = losses(out(name));
    ASSERT_EQ(ours.size(), reference.size()) << name;
    for (std::size_t i = 0; i < ours.size(); ++i) EXPECT_NEAR(ours[i], reference[i], 2e-4) << name << " step " << i + 1;
    EXPECT_LT(max_weight_difference(out(name), out("packed_np1")), 5e-5) << name;
  }
  // Text is a token stream already: packing it is refused, naming the key.
  expect_one_line_error(run(1, "train " + sft("packed_text", still, true, "causal_lm")),
                        "key 'data.packing' packs prompt/completion examples: it needs data.task 'sft'");
}

}  // namespace
}  // namespace mpitrain
