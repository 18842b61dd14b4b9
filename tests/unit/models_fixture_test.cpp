// Parity with transformers on the hf-tiny and hf-families fixtures: logits within 1e-4, and saves byte-identical to HF's.
#include <gtest/gtest.h>

#include <filesystem>

#include "runtime/checkpoint/json_file.h"
#include "runtime/checkpoint/npy.h"
#include "src/models/inputs_json.h"
#include "src/models/pretrained.h"
#include "tests/unit/fixture_logits.h"
#include "tests/unit/test_files.h"

namespace mpitrain::models {
namespace {

namespace fs = std::filesystem;
using checkpoint::read_json_file;
using testing::fixture;
using testing::max_masked_difference;
using testing::ScratchDir;

constexpr double kLogitsTolerance = 1e-4;  // absolute, as the fixtures' README states

struct Case {
  std::string model;    // fixture directory
  std::string weights;  // single | sharded | bf16
  std::string logits;   // reference file
};

class FixtureParity : public ::testing::TestWithParam<Case> {};

TEST_P(FixtureParity, LogitsMatchTransformers) {
  const auto& c = GetParam();
  auto loaded = from_pretrained(fixture(c.model + "/" + c.weights));
  EXPECT_TRUE(loaded.ignored_tensors.empty());
  loaded.model->eval();
  torch::NoGradGuard no_grad;
  const auto inputs = read_inputs_json(fixture(c.model + "/inputs.json"));
  const auto logits = loaded.model->forward(inputs);
  const auto reference = checkpoint::read_npy_float32(fixture(c.model + "/" + c.logits));
  const double diff = max_masked_difference(logits, reference, inputs);
  EXPECT_LT(diff, kLogitsTolerance) << c.model << "/" << c.weights;
  // The comparison must be able to fail: a perturbed norm weight moves the logits well past it.
  auto parameters = loaded.model->named_parameters();
  auto first_norm = std::find_if(parameters.begin(), parameters.end(), [](const auto& p) {
    return p.key().find("norm") != std::string::npos || p.key().find("ln_") != std::string::npos ||
           p.key().find("LayerNorm") != std::string::npos;
  });
  ASSERT_NE(first_norm, parameters.end());
  first_norm->value().add_(0.5);
  EXPECT_GT(max_masked_difference(loaded.model->forward(inputs), reference, inputs), 10 * kLogitsTolerance);
}

TEST_P(FixtureParity, SaveIsByteIdenticalToTransformers) {
  const auto& c = GetParam();
  auto loaded = from_pretrained(fixture(c.model + "/" + c.weights));
  const auto stored = loaded.model->config().at("torch_dtype").get<std::string>();
  ScratchDir out;
  SaveOptions options;
  options.dtype = parse_torch_dtype(stored);
  options.max_shard_size = c.weights == "sharded" ? 100'000 : 5'000'000'000;  // the fixtures used "100KB"
  save_pretrained(*loaded.model, out.path(), options, loaded.generation_config);

  const fs::path source = fixture(c.model + "/" + c.weights);
  for (const auto& item : fs::directory_iterator(source)) {
    const auto name = item.path().filename().string();
    if (name == "config.json" || name == "generation_config.json") continue;
    ASSERT_TRUE(fs::exists(out / name)) << name;
    EXPECT_TRUE(testing::read_bytes(item.path().string()) == testing::read_bytes(out / name))
        << name << " differs from the transformers-written file";
  }
  // config.json: every key of the source round-trips; the dtype is under both names; ties are explicit.
  const auto original = read_json_file((source / "config.json").string());
  const auto saved = read_json_file(out / "config.json");
  for (auto it = original.begin(); it != original.end(); ++it) {
    ASSERT_TRUE(saved.contains(it.key())) << it.key();
    EXPECT_EQ(saved.at(it.key()), it.value()) << it.key();
  }
  EXPECT_EQ(saved.at("dtype"), stored);
  EXPECT_TRUE(saved.contains("tie_word_embeddings"));
  EXPECT_EQ(fs::exists(out / "generation_config.json"), loaded.model->is_causal_lm());
}

INSTANTIATE_TEST_SUITE_P(
    HfTiny, FixtureParity,
    ::testing::Values(Case{"llama", "single", "logits.npy"}, Case{"llama", "sharded", "logits.npy"},
                      Case{"llama", "bf16", "logits_bf16.npy"}, Case{"llama_tied", "single", "logits.npy"},
                      Case{"llama_tied", "sharded", "logits.npy"}, Case{"gpt2", "single", "logits.npy"},
                      Case{"gpt2", "sharded", "logits.npy"}, Case{"bert_seqcls", "single", "logits.npy"},
                      Case{"bert_seqcls", "sharded", "logits.npy"}),
    [](const ::testing::TestParamInfo<Case>& info) { return info.param.model + "_" + info.param.weights; });

// The five families of ../hf-families, read through the same fixture() root.
Case family(const std::string& name, const std::string& weights) { return {"../hf-families/" + name, weights, "logits.npy"}; }

INSTANTIATE_TEST_SUITE_P(
    HfFamilies, FixtureParity,
    ::testing::Values(family("qwen2", "single"), family("qwen2", "sharded"), family("mistral", "single"),
                      family("mistral", "sharded"), family("gemma", "single"), family("gemma", "sharded"),
                      family("gemma2", "single"), family("gemma2", "sharded"), family("phi3", "single"),
                      family("phi3", "sharded")),
    [](const ::testing::TestParamInfo<Case>& info) {
      return info.param.model.substr(info.param.model.rfind('/') + 1) + "_" + info.param.weights;
    });

TEST(FixtureParity, Bfloat16ComputeStaysCloseToFloat32) {
  auto f32 = from_pretrained(fixture("llama/single"), torch::kFloat32);
  auto bf16 = from_pretrained(fixture("llama/single"), torch::kBFloat16);
  f32.model->eval();
  bf16.model->eval();
  torch::NoGradGuard no_grad;
  const auto inputs = read_inputs_json(fixture("llama/inputs.json"));
  const auto a = f32.model->forward(inputs);
  const auto b = bf16.model->forward(inputs).to(torch::kFloat32);
  EXPECT_EQ(bf16.model->named_parameters()[0].value().scalar_type(), torch::kBFloat16);
  // bf16 keeps ~3 significant digits; logits are O(3) here.
  EXPECT_LT((a - b).abs().max().item<double>(), 0.15);
}

}  // namespace
}  // namespace mpitrain::models
