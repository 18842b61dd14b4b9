// Packed examples: pack_examples' rows (best-fit decreasing, whole examples, positions from 0, first label masked), and causal LMs giving each packed example the logits it has alone.
#include <gtest/gtest.h>

#include "src/data/packing.h"
#include "src/models/registry.h"

namespace mpitrain {
namespace {

using nlohmann::json;

data::TokenLabelledRows examples_of_lengths(const std::vector<std::size_t>& lengths) {
  data::TokenLabelledRows rows;
  for (std::size_t e = 0; e < lengths.size(); ++e) {
    std::vector<std::int32_t> ids(lengths[e]);
    for (std::size_t t = 0; t < ids.size(); ++t) ids[t] = static_cast<std::int32_t>(10 * e + t);
    rows.ids.push_back(ids);
    rows.labels.push_back(ids);  // every token a target
  }
  return rows;
}

TEST(Packing, LongestFirstIntoTheTightestRowEachExampleWholeAndNumberedFromZero) {
  // Rows of 10: 6 opens a row (4 left), 5 another (5 left), 4 fills the first exactly (its 4
  // is the tightest room), 3 then 2 fill the second.
  const auto rows = data::pack_examples(examples_of_lengths({3, 6, 2, 5, 4}), 10);
  ASSERT_EQ(rows.ids.size(), 2u);
  EXPECT_EQ(rows.ids[0], (std::vector<std::int32_t>{10, 11, 12, 13, 14, 15, 40, 41, 42, 43}));
  EXPECT_EQ(rows.ids[1], (std::vector<std::int32_t>{30, 31, 32, 33, 34, 0, 1, 2, 20, 21}));
  EXPECT_EQ(rows.position_ids[0], (std::vector<std::int32_t>{0, 1, 2, 3, 4, 5, 0, 1, 2, 3}));
  EXPECT_EQ(rows.position_ids[1], (std::vector<std::int32_t>{0, 1, 2, 3, 4, 0, 1, 2, 0, 1}));
  // Each example's first token is no target (nothing of its own predicts it); the rest are.
  EXPECT_EQ(rows.labels[0], (std::vector<std::int32_t>{-100, 11, 12, 13, 14, 15, -100, 41, 42, 43}));
  EXPECT_EQ(rows.labels[1], (std::vector<std::int32_t>{-100, 31, 32, 33, 34, -100, 1, 2, -100, 21}));
  // An example too long for a row is a caller's bug (prepare cuts rows to max_length first).
  EXPECT_THROW(data::pack_examples(examples_of_lengths({11}), 10), std::logic_error);
}

// Three examples packed into one row then padding, and each run alone: the packed row's logits
// at each example's positions are that example's own.
void expect_packed_logits_are_each_examples_own(const json& config) {
  torch::manual_seed(3);
  auto model = models::create_model(config, "test config");
  model->eval();
  torch::NoGradGuard no_grad;
  const auto vocab = config.at("vocab_size").get<std::int64_t>();
  const std::vector<std::int64_t> lengths{5, 7, 4};
  const std::int64_t width = 19;  // 16 real tokens, then 3 of padding
  models::ModelInputs packed;
  packed.input_ids = torch::randint(vocab, {1, width}, torch::kInt64);
  packed.attention_mask = torch::ones({1, width}, torch::kInt64);
  packed.attention_mask[0].narrow(0, 16, 3).zero_();
  packed.position_ids = torch::empty({1, width}, torch::kInt64);
  std::int64_t start = 0;
  for (const auto length : lengths) {
    packed.position_ids[0].narrow(0, start, length).copy_(torch::arange(length));
    start += length;
  }
  packed.position_ids[0].narrow(0, 16, 3).copy_(torch::arange(4, 7));  // the last example's, continued
  const auto logits = model->forward(packed);
  start = 0;
  double worst = 0;
  for (const auto length : lengths) {
    models::ModelInputs alone;
    alone.input_ids = packed.input_ids.narrow(1, start, length);
    const auto own = model->forward(alone);
    worst = std::max(worst, (logits.narrow(1, start, length) - own).abs().max().item<double>());
    start += length;
  }
  EXPECT_LT(worst, 1e-5) << config.dump();
  // Without the position ids the row is one long sequence: later examples see earlier ones.
  packed.position_ids = torch::Tensor();
  const auto streamed = model->forward(packed);
  EXPECT_GT((streamed.narrow(1, 5, 11) - logits.narrow(1, 5, 11)).abs().max().item<double>(), 1e-3);
}

TEST(Packing, ALlamaGivesEachPackedExampleItsOwnLogits) {
  expect_packed_logits_are_each_examples_own(
      {{"model_type", "llama"}, {"vocab_size", 50}, {"hidden_size", 32}, {"intermediate_size", 48},
       {"num_hidden_layers", 2}, {"num_attention_heads", 4}, {"num_key_value_heads", 2}});
}

TEST(Packing, AGpt2GivesEachPackedExampleItsOwnLogits) {
  expect_packed_logits_are_each_examples_own(
      {{"model_type", "gpt2"}, {"vocab_size", 50}, {"n_embd", 32}, {"n_layer", 2}, {"n_head", 2}, {"n_positions", 24}});
}

}  // namespace
}  // namespace mpitrain
