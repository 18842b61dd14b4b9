// Each family's fixture sees what makes the family: without its window, soft-caps, (1 + w) norm, embedding scale, q/k/v biases or fused order, the logits leave transformers' by far more than the 1e-4 tolerance.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>

#include "runtime/checkpoint/json_file.h"
#include "runtime/checkpoint/npy.h"
#include "src/models/inputs_json.h"
#include "src/models/pretrained.h"
#include "tests/unit/test_files.h"

namespace mpitrain::models {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr double kTolerance = 1e-4;  // the fixtures' comparison
constexpr double kMissed = 1e-3;     // what dropping a feature must move the logits by, at least

std::string family_fixture(const std::string& family) { return testing::fixture("../hf-families/" + family); }

// Max |logits - transformers'| over the positions attention_mask marks real.
double distance_to_reference(HfModel& model, const std::string& family) {
  model.eval();
  torch::NoGradGuard no_grad;
  const auto inputs = read_inputs_json(family_fixture(family) + "/inputs.json");
  const auto reference = checkpoint::read_npy_float32(family_fixture(family) + "/logits.npy");
  auto ref = torch::from_blob(const_cast<float*>(reference.data.data()), reference.shape, torch::kFloat32);
  auto diff = (model.forward(inputs) - ref).abs() * inputs.attention_mask.unsqueeze(-1).to(torch::kFloat32);
  return diff.max().item<double>();
}

// The family's model loaded with its config edited: the same weights, a feature switched off.
double distance_with_config(const std::string& family, const std::function<void(json&)>& edit) {
  testing::ScratchDir scratch;
  const auto dir = scratch / "model";
  fs::copy(family_fixture(family) + "/single", dir);
  auto config = checkpoint::read_json_file(dir + "/config.json");
  edit(config);
  checkpoint::write_json_file(dir + "/config.json", config);
  return distance_to_reference(*from_pretrained(dir).model, family);
}

// The family's model with some of its tensors changed in place.
double distance_with_weights(const std::string& family, const std::function<void(const std::string&, torch::Tensor&)>& edit) {
  auto model = from_pretrained(family_fixture(family) + "/single").model;
  EXPECT_LT(distance_to_reference(*model, family), kTolerance) << family;
  torch::NoGradGuard no_grad;
  for (auto& item : model->named_parameters()) edit(item.key(), item.value());
  return distance_to_reference(*model, family);
}

bool ends_with_name(const std::string& name, const std::string& suffix) {
  return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

TEST(FamilyFeatures, Qwen2WithoutItsQkvBiases) {
  EXPECT_GT(distance_with_weights("qwen2", [](const std::string& name, torch::Tensor& t) {
              if (ends_with_name(name, "_proj.bias")) t.zero_();
            }),
            kMissed);
}

TEST(FamilyFeatures, MistralWithoutItsSlidingWindow) {
  EXPECT_LT(distance_with_config("mistral", [](json&) {}), kTolerance);  // the copy itself matches
  EXPECT_GT(distance_with_config("mistral", [](json& c) { c["sliding_window"] = nullptr; }), kMissed);
}

TEST(FamilyFeatures, GemmaWithoutOnePlusWeightNorms) {
  // Norm weights w - 1 under (1 + w) compute x * w: a plain RMSNorm.
  EXPECT_GT(distance_with_weights("gemma", [](const std::string& name, torch::Tensor& t) {
              if (name.find("norm") != std::string::npos) t.sub_(1.0);
            }),
            kMissed);
}

TEST(FamilyFeatures, GemmaWithoutItsEmbeddingScale) {
  // The same weights as a Llama (norm weights 1 + w, GeGLU, head_dim 32, tied) is Gemma with
  // nothing but the sqrt(hidden_size) scale of the embeddings missing.
  testing::ScratchDir scratch;
  const auto dir = scratch / "model";
  fs::copy(family_fixture("gemma") + "/single", dir);
  auto config = checkpoint::read_json_file(dir + "/config.json");
  config["model_type"] = "llama";
  config["architectures"] = {"LlamaForCausalLM"};
  config["tie_word_embeddings"] = true;
  checkpoint::write_json_file(dir + "/config.json", config);
  auto model = from_pretrained(dir).model;
  torch::NoGradGuard no_grad;
  for (auto& item : model->named_parameters())
    if (item.key().find("norm") != std::string::npos) item.value().add_(1.0);
  EXPECT_GT(distance_to_reference(*model, "gemma"), kMissed);
}

TEST(FamilyFeatures, Gemma2WithoutEachOfItsFeatures) {
  EXPECT_LT(distance_with_config("gemma2", [](json&) {}), kTolerance);
  EXPECT_GT(distance_with_config("gemma2", [](json& c) { c["sliding_window"] = nullptr; }), kMissed);
  EXPECT_GT(distance_with_config("gemma2", [](json& c) { c["attn_logit_softcapping"] = nullptr; }), kMissed);
  EXPECT_GT(distance_with_config("gemma2", [](json& c) { c["final_logit_softcapping"] = nullptr; }), kMissed);
  // Scaled by head_dim (16) ** -0.5 instead of query_pre_attn_scalar (24) ** -0.5.
  EXPECT_GT(distance_with_config("gemma2", [](json& c) { c["query_pre_attn_scalar"] = c["head_dim"]; }), kMissed);
}

TEST(FamilyFeatures, Phi3WithItsFusedPartsInAnotherOrder) {
  // gate_up_proj read as [up | gate], and qkv_proj as [q | v | k] (2 kv heads of 16).
  EXPECT_GT(distance_with_weights("phi3", [](const std::string& name, torch::Tensor& t) {
              if (!ends_with_name(name, "gate_up_proj.weight")) return;
              const auto halves = t.chunk(2, 0);
              t.copy_(torch::cat({halves[1], halves[0]}, 0));
            }),
            kMissed);
  EXPECT_GT(distance_with_weights("phi3", [](const std::string& name, torch::Tensor& t) {
              if (!ends_with_name(name, "qkv_proj.weight")) return;
              const std::int64_t kv = 2 * 16;
              const auto parts = t.split({t.size(0) - 2 * kv, kv, kv}, 0);
              t.copy_(torch::cat({parts[0], parts[2], parts[1]}, 0));
            }),
            kMissed);
}

}  // namespace
}  // namespace mpitrain::models
