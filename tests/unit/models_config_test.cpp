// Models beyond the fixtures: other sizes, masks and causality, bare GPT-2 names, and each bad config or tensor.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>

#include "runtime/checkpoint/json_file.h"
#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/hf_weights.h"
#include "runtime/checkpoint/torch_tensors.h"
#include "src/models/inputs_json.h"
#include "src/models/pretrained.h"
#include "src/models/decoder_family.h"
#include "src/models/rope.h"
#include "src/models/registry.h"
#include "tests/unit/test_files.h"

namespace mpitrain::models {
namespace {

namespace fs = std::filesystem;
using checkpoint::CheckpointError;
using checkpoint::read_json_file;
using checkpoint::write_json_file;
using nlohmann::json;
using testing::fixture;
using testing::ScratchDir;

json small_llama() {
  return json{{"model_type", "llama"}, {"vocab_size", 100},        {"hidden_size", 48},
              {"intermediate_size", 80}, {"num_hidden_layers", 3}, {"num_attention_heads", 6},
              {"num_key_value_heads", 3}, {"attention_bias", true}, {"mlp_bias", true},
              {"tie_word_embeddings", false}, {"rope_theta", 500000.0}, {"rms_norm_eps", 1e-5}};
}
json small_gpt2() {
  return json{{"model_type", "gpt2"}, {"vocab_size", 90}, {"n_embd", 32}, {"n_layer", 3}, {"n_head", 2},
              {"n_positions", 40}};
}
json small_bert() {
  return json{{"model_type", "bert"},      {"vocab_size", 70},          {"hidden_size", 24},
              {"num_hidden_layers", 1},    {"num_attention_heads", 3},  {"intermediate_size", 40},
              {"max_position_embeddings", 32}, {"id2label", {{"0", "a"}, {"1", "b"}, {"2", "c"}}}};
}

// The five families at sizes the fixtures do not have: other head dims, windows shorter than
// the rows, caps, kv-head counts, tied and untied.
std::vector<json> small_families() {
  const json sizes = {{"vocab_size", 90}, {"hidden_size", 48}, {"intermediate_size", 40}, {"num_hidden_layers", 3},
                      {"num_attention_heads", 6}, {"num_key_value_heads", 3}};
  std::vector<json> configs;
  for (const json& family : {json{{"model_type", "qwen2"}, {"tie_word_embeddings", true}},
                             json{{"model_type", "mistral"}, {"head_dim", 20}, {"sliding_window", 3}},
                             json{{"model_type", "gemma"}, {"head_dim", 10}, {"num_key_value_heads", 1},
                                  {"tie_word_embeddings", false}},
                             json{{"model_type", "gemma2"}, {"head_dim", 12}, {"sliding_window", 4},
                                  {"attn_logit_softcapping", 5.0}, {"final_logit_softcapping", 7.0},
                                  {"query_pre_attn_scalar", 10}},
                             json{{"model_type", "phi3"}, {"sliding_window", 5}, {"num_key_value_heads", 2}}}) {
    auto config = sizes;
    config.update(family);
    configs.push_back(config);
  }
  return configs;
}

ModelInputs random_inputs(std::int64_t vocab, std::int64_t batch = 2, std::int64_t seq = 12) {
  ModelInputs inputs;
  inputs.input_ids = torch::randint(vocab, {batch, seq}, torch::kInt64);
  inputs.attention_mask = torch::ones({batch, seq}, torch::kInt64);
  inputs.attention_mask[1].narrow(0, seq - 4, 4).zero_();
  return inputs;
}

torch::Tensor eval_forward(HfModel& model, const ModelInputs& inputs) {
  model.eval();
  torch::NoGradGuard no_grad;
  return model.forward(inputs);
}

class OtherSizes : public ::testing::TestWithParam<json> {};

TEST_P(OtherSizes, SaveLoadRoundTripsExactly) {
  torch::manual_seed(7);
  auto model = create_model(GetParam(), "test config");
  ScratchDir dir;
  SaveOptions options;
  options.max_shard_size = 20'000;  // forces several shards
  save_pretrained(*model, dir.path(), options);
  EXPECT_TRUE(fs::exists(dir / "model.safetensors.index.json"));
  auto loaded = from_pretrained(dir.path());
  auto a = model->named_parameters(), b = loaded.model->named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].key(), b[i].key());
    EXPECT_TRUE(torch::equal(a[i].value(), b[i].value())) << a[i].key();
  }
  const auto inputs = random_inputs(GetParam().at("vocab_size").get<std::int64_t>());
  EXPECT_TRUE(torch::equal(eval_forward(*model, inputs), eval_forward(*loaded.model, inputs)));
}

TEST_P(OtherSizes, PaddingOnTheRightDoesNotChangeRealPositions) {
  torch::manual_seed(11);
  auto model = create_model(GetParam(), "test config");
  const auto inputs = random_inputs(GetParam().at("vocab_size").get<std::int64_t>());
  const auto padded = eval_forward(*model, inputs);
  ModelInputs trimmed;
  trimmed.input_ids = inputs.input_ids.slice(0, 1, 2).narrow(1, 0, 8);
  const auto alone = eval_forward(*model, trimmed);
  if (model->is_causal_lm())
    EXPECT_TRUE(torch::allclose(padded[1].narrow(0, 0, 8), alone[0], 1e-5, 1e-5));
  else
    EXPECT_TRUE(torch::allclose(padded[1], alone[0], 1e-5, 1e-5));
}

INSTANTIATE_TEST_SUITE_P(Configs, OtherSizes, ::testing::Values(small_llama(), small_gpt2(), small_bert()),
                         [](const ::testing::TestParamInfo<json>& info) {
                           return info.param.at("model_type").get<std::string>();
                         });
INSTANTIATE_TEST_SUITE_P(Families, OtherSizes, ::testing::ValuesIn(small_families()),
                         [](const ::testing::TestParamInfo<json>& info) {
                           return info.param.at("model_type").get<std::string>();
                         });

TEST(CausalModels, LaterTokensDoNotChangeEarlierLogits) {
  auto configs = small_families();
  configs.push_back(small_llama());
  configs.push_back(small_gpt2());
  for (const auto& config : configs) {
    torch::manual_seed(3);
    auto model = create_model(config, "test config");
    auto inputs = random_inputs(config.at("vocab_size").get<std::int64_t>());
    inputs.attention_mask = torch::Tensor();
    const auto before = eval_forward(*model, inputs);
    inputs.input_ids.narrow(1, 6, 6).random_(0, config.at("vocab_size").get<std::int64_t>());
    const auto after = eval_forward(*model, inputs);
    EXPECT_TRUE(torch::equal(before.narrow(1, 0, 6), after.narrow(1, 0, 6))) << config.at("model_type");
    EXPECT_FALSE(torch::equal(before.narrow(1, 6, 6), after.narrow(1, 6, 6)));
  }
}

TEST(Llama, GqaEqualsFullAttentionWithRepeatedKvHeads) {
  // GQA with kv heads k is full MHA whose kv weights repeat each kv head heads/k times.
  torch::manual_seed(5);
  auto gqa_config = small_llama();
  auto gqa = create_model(gqa_config, "gqa");
  auto mha_config = gqa_config;
  mha_config["num_key_value_heads"] = 6;
  auto mha = create_model(mha_config, "mha");
  torch::NoGradGuard no_grad;
  auto mha_params = mha->named_parameters();
  for (const auto& p : gqa->named_parameters()) {
    auto value = p.value();
    const bool kv = p.key().find("k_proj") != std::string::npos || p.key().find("v_proj") != std::string::npos;
    if (kv) value = value.view({3, 8, -1}).repeat_interleave(2, 0).reshape(mha_params[p.key()].sizes());
    mha_params[p.key()].copy_(value);
  }
  const auto inputs = random_inputs(100);
  EXPECT_TRUE(torch::allclose(eval_forward(*gqa, inputs), eval_forward(*mha, inputs), 1e-5, 1e-5));
}

TEST(Llama, RopeScalingVariantsBuildAndDiffer) {
  auto base = small_llama();
  auto linear = base, llama3 = base;
  linear["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  llama3["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                            {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  const auto inv_freq = [](const json& config) {
    const auto c = llama_family().read(config, "config");
    return rope_inv_freq(c.head_dim, c.rope_theta, c.rope_scaling);
  };
  const auto f0 = inv_freq(base), f1 = inv_freq(linear), f3 = inv_freq(llama3);
  EXPECT_TRUE(torch::allclose(f1, f0 / 2));
  EXPECT_FLOAT_EQ(f3[0].item<float>(), f0[0].item<float>());  // short wavelengths kept
  EXPECT_FLOAT_EQ(f3[-1].item<float>(), f0[-1].item<float>() / 8);  // long ones slowed by the factor
  auto bad = base;
  bad["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 2.0}};
  EXPECT_THROW(inv_freq(bad), CheckpointError);
}

// Copies a fixture directory so that a test can break it.
std::string copy_fixture(const ScratchDir& scratch, const std::string& relative) {
  const auto target = scratch / "model";
  fs::copy(fixture(relative), target);
  return target;
}

void expect_load_fails(const std::string& dir, const std::string& needle, const std::string& names) {
  try {
    from_pretrained(dir);
    FAIL() << "loaded a directory that should fail with '" << needle << "'";
  } catch (const CheckpointError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(needle), std::string::npos) << message;
    EXPECT_NE(message.find(names), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
}

void edit_config(const std::string& dir, const std::function<void(json&)>& edit) {
  auto config = read_json_file(dir + "/config.json");
  edit(config);
  write_json_file(dir + "/config.json", config);
}

TEST(BadModelDirectory, ConfigMissingARequiredKey) {
  ScratchDir scratch;
  const auto dir = copy_fixture(scratch, "llama/single");
  edit_config(dir, [](json& c) { c.erase("hidden_size"); });
  expect_load_fails(dir, "missing required key 'hidden_size'", "config.json");
}

TEST(BadModelDirectory, FamiliesNameTheirMissingKeyAndTheRopeScalingTheyLack) {
  ScratchDir scratch;
  const auto qwen2 = copy_fixture(scratch, "../hf-families/qwen2/single");
  edit_config(qwen2, [](json& c) { c.erase("num_attention_heads"); });
  expect_load_fails(qwen2, "missing required key 'num_attention_heads'", "config.json");
  ScratchDir other;
  const auto phi3 = copy_fixture(other, "../hf-families/phi3/single");
  edit_config(phi3, [](json& c) {
    c["rope_scaling"] = {{"type", "longrope"}, {"short_factor", json::array()}, {"long_factor", json::array()}};
  });
  expect_load_fails(phi3, "rope_scaling type 'longrope' is not implemented for phi3", "config.json");
  ScratchDir third;
  const auto gemma2 = copy_fixture(third, "../hf-families/gemma2/single");
  edit_config(gemma2, [](json& c) { c["sliding_window"] = 0; });
  expect_load_fails(gemma2, "sliding_window must be a positive number of tokens or null", "config.json");
}

TEST(BadModelDirectory, UnknownModelType) {
  ScratchDir scratch;
  const auto dir = copy_fixture(scratch, "llama/single");
  edit_config(dir, [](json& c) { c["model_type"] = "mamba"; });
  expect_load_fails(dir, "unknown model_type 'mamba' (supported: bert, gemma, gemma2, gpt2, llama, mistral, phi3, qwen2)", "config.json");
}

TEST(BadModelDirectory, InvalidConfigJson) {
  ScratchDir scratch;
  const auto dir = copy_fixture(scratch, "gpt2/single");
  testing::write_bytes(dir + "/config.json", "{\"model_type\": ");
  expect_load_fails(dir, "invalid JSON", "config.json");
  fs::remove(dir + "/config.json");
  expect_load_fails(dir, "does not exist", "config.json");
}

TEST(BadModelDirectory, ValuesThatWouldTrainNanOrFailInsideTorch) {
  // Before: a negative epsilon or RoPE base trained NaN to the end with exit status 0, and a
  // dropout of 1.5 failed inside LibTorch naming neither the key nor the file.
  ScratchDir scratch;
  const auto llama = copy_fixture(scratch, "llama/single");
  edit_config(llama, [](json& c) { c["rms_norm_eps"] = -1; });
  expect_load_fails(llama, "key 'rms_norm_eps' must be a positive number, got -1", "config.json");
  edit_config(llama, [](json& c) {
    c["rms_norm_eps"] = 1e-6;
    c["rope_theta"] = 0;
  });
  expect_load_fails(llama, "key 'rope_theta' must be a positive number, got 0", "config.json");
  ScratchDir gpt2_scratch, bert_scratch;  // one fixture copy per scratch directory
  const auto gpt2 = copy_fixture(gpt2_scratch, "gpt2/single");
  edit_config(gpt2, [](json& c) { c["resid_pdrop"] = 1.5; });
  expect_load_fails(gpt2, "key 'resid_pdrop' must be a probability in [0, 1], got 1.5", "config.json");
  const auto bert = copy_fixture(bert_scratch, "bert_seqcls/single");
  edit_config(bert, [](json& c) { c["layer_norm_eps"] = -1e-12; });
  expect_load_fails(bert, "key 'layer_norm_eps' must be a positive number", "config.json");
}

TEST(BadModelDirectory, TensorShapeThatDoesNotFitTheConfig) {
  ScratchDir scratch;
  const auto dir = copy_fixture(scratch, "llama/sharded");
  edit_config(dir, [](json& c) { c["intermediate_size"] = 96; });
  expect_load_fails(dir, "tensor 'model.layers.0.mlp.gate_proj.weight' has shape [128,64] but config.json implies [96,64]",
                    "model-00002-of-00005.safetensors");
}

TEST(BadModelDirectory, MissingTensorIsAnErrorNotARandomInit) {
  ScratchDir scratch;
  const auto dir = copy_fixture(scratch, "bert_seqcls/single");
  // Re-save the weights without the classifier, as a checkpoint of another head would be.
  auto weights = checkpoint::HfWeights::open(dir);
  std::vector<torch::Tensor> keep;
  std::vector<checkpoint::TensorBytes> tensors;
  for (const auto& name : weights.names()) {
    if (name.rfind("classifier.", 0) == 0) continue;
    keep.push_back(checkpoint::read_tensor(weights.file_of(name), weights.entry(name)));
    tensors.push_back(checkpoint::tensor_bytes(name, keep.back()));
  }
  checkpoint::save_hf_weights(scratch / "bert", tensors, 5'000'000'000);
  fs::copy(dir + "/config.json", scratch / "bert/config.json");
  expect_load_fails(scratch / "bert", "2 tensor(s) the model needs are missing (classifier.weight, classifier.bias)",
                    scratch / "bert");
}

TEST(Gpt2, LoadsCheckpointsOfTheBareModelWithBufferNames) {
  // Original GPT-2 checkpoints name tensors without "transformer." and carry attn.bias buffers.
  ScratchDir scratch;
  auto weights = checkpoint::HfWeights::open(fixture("gpt2/single"));
  std::vector<torch::Tensor> keep;
  std::vector<checkpoint::TensorBytes> tensors;
  for (const auto& name : weights.names()) {
    keep.push_back(checkpoint::read_tensor(weights.file_of(name), weights.entry(name)));
    tensors.push_back(checkpoint::tensor_bytes(name.substr(std::string("transformer.").size()), keep.back()));
  }
  keep.push_back(torch::ones({1, 1, 128, 128}, torch::kBool));
  tensors.push_back(checkpoint::tensor_bytes("h.0.attn.bias", keep.back()));
  checkpoint::save_hf_weights(scratch / "gpt2", tensors, 5'000'000'000);
  fs::copy(fixture("gpt2/single/config.json"), scratch / "gpt2/config.json");
  auto bare = from_pretrained(scratch / "gpt2");
  auto reference = from_pretrained(fixture("gpt2/single"));
  EXPECT_TRUE(bare.ignored_tensors.empty());
  const auto inputs = read_inputs_json(fixture("gpt2/inputs.json"));
  EXPECT_TRUE(torch::equal(eval_forward(*bare.model, inputs), eval_forward(*reference.model, inputs)));
}

TEST(Inputs, RejectsRaggedRowsAndOutOfVocabularyIds) {
  ScratchDir scratch;
  testing::write_bytes(scratch / "in.json", R"({"input_ids": [[1, 2, 3], [4, 5]]})");
  EXPECT_THROW(read_inputs_json(scratch / "in.json"), CheckpointError);
  testing::write_bytes(scratch / "in.json", R"({"input_ids": [[1, 2, 300]]})");
  EXPECT_THROW(read_inputs_json(scratch / "in.json", 256), CheckpointError);
  testing::write_bytes(scratch / "in.json", R"({"input_ids": [[1, 2]], "attention_mask": [[1]]})");
  EXPECT_THROW(read_inputs_json(scratch / "in.json"), CheckpointError);
}

}  // namespace
}  // namespace mpitrain::models
