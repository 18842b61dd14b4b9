// Evaluation runs the training forward's autocast (as HF's Trainer does) and weights every token once, checked against a forward computed by hand.
#include <gtest/gtest.h>

#include <cmath>

#include "src/data/hdf5_dataset.h"
#include "src/models/autocast.h"
#include "src/models/pretrained.h"
#include "src/models/registry.h"
#include "src/train/evaluator.h"
#include "src/train/losses.h"
#include "src/train/task_forward.h"
#include "tests/unit/single_rank_communicator.h"
#include "tests/unit/test_files.h"

namespace mpitrain::train {
namespace {

nlohmann::json llama() {
  return {{"model_type", "llama"}, {"vocab_size", 64}, {"hidden_size", 32}, {"intermediate_size", 64},
          {"num_hidden_layers", 2}, {"num_attention_heads", 4}, {"num_key_value_heads", 2},
          {"max_position_embeddings", 64}, {"initializer_range", 0.5}};
}

// The eval split's token-weighted mean loss, one forward over all of it, by hand.
double loss_by_hand(models::HfModel& model, const data::Hdf5Dataset& eval, bool bf16) {
  torch::NoGradGuard no_grad;
  model.eval();
  std::vector<std::int64_t> all;
  for (std::int64_t i = 0; i < eval.size(); ++i) all.push_back(i);
  const auto batch = eval.read(all);
  torch::Tensor logits;
  {
    models::AutocastScope autocast(at::kCPU, bf16);
    logits = model.forward({batch.input_ids, batch.attention_mask, {}, {}});
  }
  return causal_lm_loss(logits, batch.labels, batch.attention_mask).loss.item<double>();
}

TEST(Evaluate, RunsUnderTheTrainingAutocastAndCountsEveryTokenOnce) {
  testing::ScratchDir dir;
  std::vector<std::int32_t> train(200), eval(7 * 16 + 5);
  for (std::size_t i = 0; i < train.size(); ++i) train[i] = static_cast<std::int32_t>((i * 7) % 64);
  for (std::size_t i = 0; i < eval.size(); ++i) eval[i] = static_cast<std::int32_t>((i * 13 + 5) % 64);
  const auto path = dir / "data.h5";
  data::write_token_file(path, train, eval, 64);
  const data::Hdf5Dataset eval_data(path, "eval", 16);
  ASSERT_EQ(eval_data.size(), 7);
  torch::manual_seed(1);
  const auto model = models::create_model(llama(), "model");
  testing::SingleRankCommunicator dp;
  for (const bool bf16 : {false, true}) {
    EvaluationOptions options;
    options.batch_size = 3;  // 3 + 3 + 1: an uneven last batch, weighted by its tokens
    options.bf16 = bf16;
    const auto result = evaluate(*model, eval_data, dp, options);
    const double expected = std::round(loss_by_hand(*model, eval_data, bf16) * 1e4) / 1e4;
    EXPECT_NEAR(result["eval_loss"].get<double>(), expected, 1.01e-4) << "bf16 " << bf16;
  }
  // The premise: autocast moves this loss well beyond the rounding of the figure compared
  // (large weights, so bfloat16's rounding of large logits does not average away in the mean).
  EXPECT_GT(std::abs(loss_by_hand(*model, eval_data, true) - loss_by_hand(*model, eval_data, false)), 3e-4);
}

TEST(Evaluate, AStopRequestEndsItAtTheNextCheckAndUnansweredLeavesTheMetricsAlone) {
  testing::ScratchDir dir;
  std::vector<std::int32_t> train(200), eval(23 * 8);
  for (std::size_t i = 0; i < train.size(); ++i) train[i] = static_cast<std::int32_t>((i * 7) % 64);
  for (std::size_t i = 0; i < eval.size(); ++i) eval[i] = static_cast<std::int32_t>((i * 13 + 5) % 64);
  data::write_token_file(dir / "data.h5", train, eval, 64);
  const data::Hdf5Dataset eval_data(dir / "data.h5", "eval", 8);
  ASSERT_EQ(eval_data.size(), 23);
  torch::manual_seed(1);
  const auto model = models::create_model(llama(), "model");
  testing::SingleRankCommunicator dp;
  EvaluationOptions options;
  options.batch_size = 2;  // 12 batches, checked before batches 4 and 8 (0-based)
  const auto plain = evaluate(*model, eval_data, dp, options);
  int asked = 0;
  options.stop_requested = [&] { return ++asked == 99; };
  EvaluationOutcome outcome;
  EXPECT_EQ(evaluate(*model, eval_data, dp, options, &outcome), plain);
  EXPECT_EQ(asked, 2);
  EXPECT_FALSE(outcome.cut_short);
  EXPECT_EQ(outcome.batches_run, 12);
  asked = 0;
  options.stop_requested = [&] { return ++asked == 2; };
  const auto cut = evaluate(*model, eval_data, dp, options, &outcome);
  EXPECT_TRUE(outcome.cut_short);
  EXPECT_EQ(outcome.batches_run, 8);
  EXPECT_EQ(outcome.batches, 12);
  EXPECT_TRUE(cut.empty());
}

TEST(Evaluate, AnEmptyClassificationSplitIsSaidEmptyNotAnError) {
  testing::ScratchDir dir;
  data::LabelledRows train, none;
  train.ids = {{1, 2, 3}, {4, 5}};
  train.labels = {0, 1};
  data::write_classification_file(dir / "rows.h5", train, none, 8, 0, 64);
  const data::Hdf5Dataset eval_data(dir / "rows.h5", "eval", 8);
  ASSERT_EQ(eval_data.size(), 0);
  auto config = llama();
  config["architectures"] = {"LlamaForSequenceClassification"};
  config["pad_token_id"] = 0;
  const auto model = models::create_model(config, "model");
  testing::SingleRankCommunicator dp;
  EvaluationOutcome outcome;
  const auto result = evaluate(*model, eval_data, dp, EvaluationOptions{}, &outcome);
  EXPECT_TRUE(outcome.empty);
  EXPECT_TRUE(result.contains("eval_loss"));
  EXPECT_FALSE(result.contains("eval_perplexity"));  // a classifier's, not a causal LM's
}

TEST(TaskForward, TheForwardRunsUnderAutocastOnlyWhenAsked) {
  torch::manual_seed(1);
  const auto model = models::create_model(llama(), "model");
  data::Batch batch;
  batch.input_ids = torch::randint(0, 64, {2, 8}, torch::kInt64);
  torch::NoGradGuard no_grad;
  EXPECT_EQ(forward_logits(*model, batch, at::kCPU, true).scalar_type(), at::kBFloat16);
  EXPECT_EQ(forward_logits(*model, batch, at::kCPU, false).scalar_type(), at::kFloat);
  EXPECT_EQ(models::current_autocast(), models::AutocastState{}) << "autocast left on";
}

}  // namespace
}  // namespace mpitrain::train

namespace mpitrain::train {
namespace {

// A sentence pair's token type ids reach the model: BERT's logits change with them (the
// second sentence's rows add the type-1 embedding), so a pair dataset trains on what HF sees.
TEST(TaskForward, PassesTheTokenTypeIdsOfSentencePairsToTheModel) {
  const auto loaded = models::from_pretrained(testing::fixture("bert_seqcls/single"));
  loaded.model->eval();
  torch::NoGradGuard no_grad;
  data::Batch batch;
  batch.input_ids = torch::tensor({{2, 10, 11, 3, 12, 13, 3}}, torch::kInt64);
  batch.attention_mask = torch::ones_like(batch.input_ids);
  const auto single = forward_logits(*loaded.model, batch, at::kCPU, false);
  batch.token_type_ids = torch::tensor({{0, 0, 0, 0, 1, 1, 1}}, torch::kInt64);
  const auto pair = forward_logits(*loaded.model, batch, at::kCPU, false);
  EXPECT_GT((single - pair).abs().max().item<double>(), 1e-4);
}

}  // namespace
}  // namespace mpitrain::train
