// LlamaForSequenceClassification (and each family's): started from a causal-LM checkpoint (a new score head, its lm_head unused), read at each row's last non-pad token, and saved as transformers names it.
#include "src/models/decoder_heads.h"

#include <gtest/gtest.h>

#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/json_file.h"
#include "src/models/pretrained.h"
#include "tests/unit/test_files.h"

namespace mpitrain::models {
namespace {

const nlohmann::json kClassifier = {{"architectures", {"LlamaForSequenceClassification"}}, {"num_labels", 3},
                                    {"pad_token_id", 0}};

LoadedModel classifier_from_the_causal_lm(const nlohmann::json& overrides = kClassifier) {
  return from_pretrained(testing::fixture("llama/single"), torch::kFloat32, nullptr, true, overrides);
}

TEST(LlamaClassification, StartsFromTheCausalLmWithANewScoreHeadAndItsLmHeadUnused) {
  const auto loaded = classifier_from_the_causal_lm();
  ASSERT_EQ(loaded.model->architecture(), "LlamaForSequenceClassification");
  EXPECT_EQ(loaded.initialised_tensors, std::vector<std::string>{"score.weight"});
  EXPECT_EQ(loaded.ignored_tensors, std::vector<std::string>{"lm_head.weight"});
  // The decoder is the causal LM's, tensor for tensor; the head is transformers' normal(0, 0.1).
  const auto causal = from_pretrained(testing::fixture("llama/single"));
  const auto causal_parameters = causal.model->named_parameters();
  for (const auto& item : loaded.model->named_parameters()) {
    if (item.key() == "score.weight") continue;
    ASSERT_TRUE(causal_parameters.contains(item.key())) << item.key();
    EXPECT_TRUE(torch::equal(item.value(), causal_parameters[item.key()])) << item.key();
  }
  const auto score = loaded.model->named_parameters()["score.weight"];
  EXPECT_EQ(score.sizes(), (std::vector<std::int64_t>{3, 64}));
  EXPECT_NEAR(score.std().item<double>(), 0.1, 0.03);
}

TEST(LlamaClassification, EveryFamilyStartsItsClassifierFromItsCausalLm) {
  // <Family>ForSequenceClassification from each family's causal-LM fixture: its decoder, a new
  // score head; Phi-3's fixture is untied, so its lm_head is named unused, the tied ones' is not.
  for (const std::string family : {"qwen2", "mistral", "gemma", "gemma2", "phi3"}) {
    const auto dir = testing::fixture("../hf-families/" + family + "/single");
    auto causal = from_pretrained(dir);
    const auto prefix = causal.model->sequence_classifier_architecture();
    ASSERT_EQ(prefix.substr(prefix.size() - 25), "ForSequenceClassification") << family;
    const auto loaded = from_pretrained(dir, torch::kFloat32, nullptr, true,
                                        {{"architectures", {prefix}}, {"num_labels", 2}, {"pad_token_id", 0}});
    EXPECT_EQ(loaded.model->architecture(), prefix);
    EXPECT_EQ(loaded.initialised_tensors, std::vector<std::string>{"score.weight"}) << family;
    const auto hidden = causal.model->named_parameters()["model.norm.weight"];
    EXPECT_TRUE(torch::equal(loaded.model->named_parameters()["model.norm.weight"], hidden)) << family;
    ModelInputs inputs;
    inputs.input_ids = torch::tensor({{5, 9, 17, 0}, {3, 4, 0, 0}}, torch::kInt64);
    EXPECT_EQ(loaded.model->forward(inputs).sizes(), (std::vector<std::int64_t>{2, 2})) << family;
  }
}

TEST(LlamaClassification, ReadsEachRowAtItsLastNonPadToken) {
  auto loaded = classifier_from_the_causal_lm();
  auto& model = dynamic_cast<DecoderForSequenceClassification&>(*loaded.model);
  model.eval();
  torch::NoGradGuard no_grad;
  const auto short_row = torch::tensor({{5, 9, 17, 33, 2}}, torch::kInt64);
  const auto long_row = torch::tensor({{7, 8, 9, 10, 11, 12, 13, 14}}, torch::kInt64);
  ModelInputs batch;
  batch.input_ids = torch::cat({torch::cat({short_row, torch::zeros({1, 3}, torch::kInt64)}, 1), long_row});
  batch.attention_mask = batch.input_ids.ne(0).to(torch::kInt64);
  const auto logits = model.forward(batch);
  ASSERT_EQ(logits.sizes(), (std::vector<std::int64_t>{2, 3}));
  // Each row alone, unpadded, scored at its last position by hand: the same numbers.
  for (const auto& [row, index] : {std::pair{short_row, 0}, std::pair{long_row, 1}}) {
    ModelInputs alone;
    alone.input_ids = row;
    const auto hidden = model.model->forward(alone);
    const auto expected = model.score->forward(hidden.select(1, row.size(1) - 1));
    EXPECT_LT((logits[index] - expected[0]).abs().max().item<double>(), 1e-5) << index;
  }
  // Read at a padded position instead, the short row's scores move (the check can fail).
  ModelInputs at_padding = batch;
  at_padding.input_ids = batch.input_ids.clone();
  at_padding.input_ids[0][7] = 3;
  EXPECT_GT((model.forward(at_padding)[0] - logits[0]).abs().max().item<double>(), 1e-3);
}

TEST(LlamaClassification, ABatchWithoutAPadTokenIdIsRefusedAndOneRowIsRead) {
  auto overrides = kClassifier;
  overrides["pad_token_id"] = nullptr;
  auto loaded = classifier_from_the_causal_lm(overrides);
  ModelInputs inputs;
  inputs.input_ids = torch::tensor({{5, 6, 7}, {8, 9, 10}}, torch::kInt64);
  try {
    loaded.model->forward(inputs);
    FAIL() << "a batch of two without pad_token_id was read";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("without a pad_token_id"), std::string::npos) << e.what();
  }
  inputs.input_ids = inputs.input_ids.narrow(0, 0, 1);
  EXPECT_EQ(loaded.model->forward(inputs).sizes(), (std::vector<std::int64_t>{1, 3}));
  overrides["pad_token_id"] = 256;  // past the vocabulary
  EXPECT_THROW(classifier_from_the_causal_lm(overrides), checkpoint::CheckpointError);
}

TEST(LlamaClassification, SavesAsTransformersNamesItAndLoadsBackWithoutInitialising) {
  const auto loaded = classifier_from_the_causal_lm();
  testing::ScratchDir out;
  save_pretrained(*loaded.model, out.path(), SaveOptions{});
  const auto config = checkpoint::read_json_file(out / "config.json");
  EXPECT_EQ(config["architectures"], nlohmann::json::array({"LlamaForSequenceClassification"}));
  EXPECT_EQ(config["id2label"].size(), 3u);
  EXPECT_EQ(config["pad_token_id"], 0);
  EXPECT_FALSE(std::filesystem::exists(out / "generation_config.json"));
  const auto again = from_pretrained(out.path());
  EXPECT_TRUE(again.initialised_tensors.empty());
  EXPECT_TRUE(again.ignored_tensors.empty());
  EXPECT_TRUE(torch::equal(again.model->named_parameters()["score.weight"], loaded.model->named_parameters()["score.weight"]));
}

}  // namespace
}  // namespace mpitrain::models
