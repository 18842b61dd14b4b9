// The size estimate made from a config alone against the models built from it (every hf-tiny family, tied and untied), and the key it blames.
#include "src/models/size_estimate.h"

#include <gtest/gtest.h>

#include "runtime/checkpoint/json_file.h"
#include "src/models/registry.h"
#include "tests/unit/test_files.h"

namespace mpitrain::models {
namespace {

double parameters_built(const nlohmann::json& config) {
  const auto model = create_model(config, "config.json");
  double count = 0;
  for (const auto& p : model->parameters()) count += static_cast<double>(p.numel());
  return count;
}

TEST(SizeEstimate, CountsTheParametersOfEveryFamilyAsBuilt) {
  for (const char* family : {"llama", "llama_tied", "gpt2", "bert_seqcls"}) {
    const auto config = checkpoint::read_json_file(testing::fixture(std::string(family) + "/single/config.json"));
    const auto estimate = estimate_size(config, "config.json", 16);
    // Exact for these: the estimate counts every matrix, bias and norm the model has.
    EXPECT_EQ(estimate.parameters, parameters_built(config)) << family;
    EXPECT_GT(estimate.activation_bytes_per_token, 0) << family;
    EXPECT_GT(estimate.inference_bytes_per_token, 0) << family;
  }
  // The Llama classifier: the score head [3, hidden] in place of lm_head, tied or not.
  for (const char* family : {"llama", "llama_tied"}) {
    auto config = checkpoint::read_json_file(testing::fixture(std::string(family) + "/single/config.json"));
    config["architectures"] = {"LlamaForSequenceClassification"};
    config["num_labels"] = 3;
    EXPECT_EQ(estimate_size(config, "config.json", 16).parameters, parameters_built(config)) << family;
  }
}

TEST(SizeEstimate, BlamesTheKeyThatMakesTheModelLarge) {
  auto config = checkpoint::read_json_file(testing::fixture("llama/single/config.json"));
  config["num_hidden_layers"] = 1000000;
  EXPECT_EQ(dominant_sizing_key(config, "config.json", 16).first, "num_hidden_layers");
  config["num_hidden_layers"] = 2;
  config["intermediate_size"] = 1000000000000;
  const auto [key, value] = dominant_sizing_key(config, "config.json", 16);
  EXPECT_EQ(key, "intermediate_size");
  EXPECT_EQ(value, 1000000000000);
  // Huge values are large numbers, never an overflow.
  EXPECT_GT(estimate_size(config, "config.json", 16).parameters, 1e14);
}

TEST(SizeEstimate, RefusesWhatCreateModelRefuses) {
  auto config = checkpoint::read_json_file(testing::fixture("llama/single/config.json"));
  config.erase("hidden_size");
  EXPECT_THROW(estimate_size(config, "config.json", 16), std::exception);
  config["model_type"] = "mamba";
  EXPECT_THROW(estimate_size(config, "config.json", 16), std::exception);
}

}  // namespace
}  // namespace mpitrain::models
