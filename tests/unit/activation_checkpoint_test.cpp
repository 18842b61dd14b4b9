// Activation checkpointing (gradient_checkpointing): the same losses, gradients and random numbers as without, for far less memory held between forward and backward.
#include <gtest/gtest.h>
#include <malloc.h>

#include <nlohmann/json.hpp>

#include "src/models/autocast.h"
#include "src/models/registry.h"

namespace mpitrain::models {
namespace {

using nlohmann::json;

json llama(std::int64_t hidden, std::int64_t layers) {
  return {{"model_type", "llama"}, {"vocab_size", 259}, {"hidden_size", hidden}, {"intermediate_size", 2 * hidden},
          {"num_hidden_layers", layers}, {"num_attention_heads", 4}, {"num_key_value_heads", 2},
          {"max_position_embeddings", 512}, {"tie_word_embeddings", false}};
}

// Dropout everywhere it can be: the recomputation must draw the forward's numbers again.
json gpt2() {
  return {{"model_type", "gpt2"}, {"vocab_size", 300}, {"n_embd", 32}, {"n_layer", 3}, {"n_head", 4},
          {"n_positions", 64}, {"attn_pdrop", 0.2}, {"resid_pdrop", 0.2}, {"embd_pdrop", 0.2}};
}

json bert() {
  return {{"model_type", "bert"}, {"vocab_size", 70}, {"hidden_size", 24}, {"num_hidden_layers", 2},
          {"num_attention_heads", 3}, {"intermediate_size", 40}, {"max_position_embeddings", 32},
          {"hidden_dropout_prob", 0.2}, {"attention_probs_dropout_prob", 0.2},
          {"id2label", {{"0", "a"}, {"1", "b"}, {"2", "c"}}}};
}

struct Step {
  double loss = 0;
  std::map<std::string, torch::Tensor> gradients;
  torch::Tensor next_random;  // what the default generator draws after the step
};

// One training step's forward and backward from `seed`, on the model as it is.
Step train_step(HfModel& model, const torch::Tensor& input_ids, std::uint64_t seed, bool bf16) {
  model.train();
  model.zero_grad();
  torch::manual_seed(seed);
  torch::Tensor loss;
  {
    AutocastScope autocast(at::kCPU, bf16);
    ModelInputs inputs;
    inputs.input_ids = input_ids;
    loss = model.forward(inputs).to(torch::kFloat32).pow(2).mean();
  }
  loss.backward();
  Step step;
  step.loss = loss.item<double>();
  for (const auto& item : model.named_parameters())
    if (item.value().grad().defined()) step.gradients[item.key()] = item.value().grad().clone();
  step.next_random = torch::rand({4});
  return step;
}

void expect_same_step(const Step& with, const Step& without, double tolerance) {
  EXPECT_NEAR(with.loss, without.loss, tolerance * std::abs(without.loss));
  ASSERT_EQ(with.gradients.size(), without.gradients.size());
  for (const auto& [name, gradient] : without.gradients) {
    ASSERT_TRUE(with.gradients.count(name)) << name << " got no gradient with checkpointing";
    const auto scale = gradient.abs().max().item<double>() + 1e-12;
    EXPECT_LE((with.gradients.at(name) - gradient).abs().max().item<double>(), tolerance * scale) << name;
  }
  EXPECT_TRUE(torch::equal(with.next_random, without.next_random)) << "the generator moved differently";
}

TEST(ActivationCheckpointing, SameLossGradientsAndRandomNumbersAsWithoutForEveryFamily) {
  for (const auto& config : {llama(32, 3), gpt2(), bert()}) {
    SCOPED_TRACE(config["model_type"].get<std::string>());
    torch::manual_seed(5);
    const auto model = create_model(config, "model");
    const auto input_ids = torch::randint(0, 24, {2, 16}, torch::kInt64);
    const auto without = train_step(*model, input_ids, 17, false);
    model->set_gradient_checkpointing(true);
    const auto with = train_step(*model, input_ids, 17, false);
    model->set_gradient_checkpointing(false);
    // The recomputation runs the same kernels on the same values; only the order in which an
    // input's gradient contributions are summed may differ (float32 rounding).
    expect_same_step(with, without, 1e-6);
    // Dropout is on: a different draw would change the step far beyond that.
    if (config["model_type"] != "llama") {
      const auto other_seed = train_step(*model, input_ids, 18, false);
      EXPECT_GT(std::abs(other_seed.loss - without.loss), 1e-4 * std::abs(without.loss));
    }
  }
}

// The largest difference between two steps' gradients, relative to each tensor's largest value.
double largest_gradient_difference(const Step& a, const Step& b) {
  double largest = 0;
  for (const auto& [name, gradient] : b.gradients) {
    const auto scale = gradient.abs().max().item<double>() + 1e-12;
    largest = std::max(largest, (a.gradients.at(name) - gradient).abs().max().item<double>() / scale);
  }
  return largest;
}

TEST(ActivationCheckpointing, RecomputesUnderTheForwardsAutocast) {
  // bfloat16 autocast is on in forward and off in backward: a recomputation in float32 would
  // give gradients off by bfloat16's rounding, not the same ones.
  torch::manual_seed(5);
  const auto model = create_model(llama(32, 2), "model");
  const auto input_ids = torch::randint(0, 259, {2, 16}, torch::kInt64);
  const auto without = train_step(*model, input_ids, 3, true);
  model->set_gradient_checkpointing(true);
  const auto with = train_step(*model, input_ids, 3, true);
  expect_same_step(with, without, 1e-5);
  EXPECT_EQ(current_autocast(), AutocastState{}) << "autocast left on after backward";
  // The premise, on any CPU: bfloat16 moves the gradients far beyond the tolerance above. Every
  // input of a bfloat16 matmul is rounded to 8 significant bits (relative error up to 2^-9), so
  // some gradient element moves by ~1e-3 of its tensor's largest, whatever kernel (AVX2,
  // AVX-512, avx512_bf16, AMX) multiplies. The loss is no such witness: a mean over 8,288
  // logits' squares averages the rounding away (4.6e-5 relative on one AMD EPYC, 1e-4 on an
  // Intel Xeon).
  const auto float32 = train_step(*model, input_ids, 3, false);
  EXPECT_GT(largest_gradient_difference(float32, without), 1e-3);
}

TEST(ActivationCheckpointing, LayersGetGradientsWhereTheirInputNeedsNone) {
  // A frozen embedding: PyTorch's reentrant checkpoint gives such layers no gradients.
  torch::manual_seed(5);
  const auto model = create_model(llama(32, 2), "model");
  for (auto& item : model->named_parameters())
    if (item.key().find("embed_tokens") != std::string::npos) item.value().requires_grad_(false);
  const auto input_ids = torch::randint(0, 259, {2, 16}, torch::kInt64);
  const auto without = train_step(*model, input_ids, 3, false);
  ASSERT_TRUE(without.gradients.count("model.layers.0.self_attn.q_proj.weight"));
  model->set_gradient_checkpointing(true);
  expect_same_step(train_step(*model, input_ids, 3, false), without, 1e-6);
}

TEST(ActivationCheckpointing, EvaluationRunsThePlainForward) {
  torch::manual_seed(5);
  const auto model = create_model(gpt2(), "model");
  model->eval();
  const auto input_ids = torch::randint(0, 300, {2, 16}, torch::kInt64);
  ModelInputs inputs;
  inputs.input_ids = input_ids;
  torch::NoGradGuard no_grad;
  const auto plain = model->forward(inputs);
  model->set_gradient_checkpointing(true);
  EXPECT_TRUE(torch::equal(model->forward(inputs), plain));
}

// Bytes malloc has handed out and not had back (the CPU allocator's tensors among them).
std::int64_t live_heap_bytes() {
  const auto info = ::mallinfo2();
  return static_cast<std::int64_t>(info.uordblks + info.hblkhd);
}

TEST(ActivationCheckpointing, HoldsOnlyEachLayersInputBetweenForwardAndBackward) {
  torch::manual_seed(5);
  const std::int64_t batch = 4, seq = 256, hidden = 128, layers = 6;
  const auto model = create_model(llama(hidden, layers), "model");
  model->train();
  const auto input_ids = torch::randint(0, 259, {batch, seq}, torch::kInt64);
  std::map<bool, std::int64_t> held;
  for (bool checkpointing : {false, true}) {
    model->set_gradient_checkpointing(checkpointing);
    ModelInputs inputs;
    inputs.input_ids = input_ids;
    const auto before = live_heap_bytes();
    auto loss = model->forward(inputs).pow(2).mean();
    held[checkpointing] = live_heap_bytes() - before;
    loss.backward();
    model->zero_grad();
  }
  // Each layer's input stays (float32 [batch, seq, hidden]); the logits and what the loss
  // keeps are the same either way.
  const std::int64_t layer_inputs = layers * batch * seq * hidden * 4;
  const std::int64_t logits = batch * seq * 259 * 4;
  // The measurement itself first: glibc's malloc counts what tensors hold (another allocator
  // preloaded would read 0 here and pass the bound below for nothing).
  ASSERT_GT(held[true], layer_inputs / 2) << "mallinfo2 does not see the tensors' memory";
  EXPECT_LT(held[true], layer_inputs + 4 * logits + (1 << 20)) << "checkpointed";
  // Without, each layer keeps its q/k/v, attention, MLP and norm activations: many times more.
  EXPECT_GT(held[false], 4 * held[true]) << "plain " << held[false] << " checkpointed " << held[true];
}

}  // namespace
}  // namespace mpitrain::models
