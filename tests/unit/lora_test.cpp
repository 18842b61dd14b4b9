// LoRA adapters against the adapters the real PEFT wrote (../shared/fixtures/peft): logits, a save of the same bytes, the merged model, and every refusal.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/json_file.h"
#include "runtime/checkpoint/npy.h"
#include "runtime/checkpoint/safetensors_file.h"
#include "src/models/inputs_json.h"
#include "src/models/lora.h"
#include "src/models/pretrained.h"
#include "src/models/registry.h"
#include "tests/unit/fixture_logits.h"
#include "tests/unit/test_files.h"

namespace mpitrain::models {
namespace {

namespace fs = std::filesystem;
using testing::fixture;
using testing::ScratchDir;

struct PeftCase {
  std::string name, base;  // peft/<name>; the base fixture, relative to hf-tiny
};

void PrintTo(const PeftCase& c, std::ostream* os) { *os << c.name; }

std::string peft(const std::string& relative) { return fixture("../peft/" + relative); }

double max_masked_difference(const torch::Tensor& logits, const std::string& npy, const ModelInputs& inputs) {
  return testing::max_masked_difference(logits, checkpoint::read_npy_float32(npy), inputs);
}

torch::Tensor eval_logits(HfModel& model, const ModelInputs& inputs) {
  model.eval();
  torch::NoGradGuard no_grad;
  return model.forward(inputs);
}

class PeftFixtures : public ::testing::TestWithParam<PeftCase> {};

TEST_P(PeftFixtures, LogitsMatchPeft) {
  const auto& c = GetParam();
  auto loaded = from_pretrained(fixture(c.base + "/single"));
  const auto inputs = read_inputs_json(fixture(c.base + "/inputs.json"));
  const auto reference = peft(c.name + "/logits.npy");
  // Without the adapter the logits are far off: the comparison can fail.
  EXPECT_GT(max_masked_difference(eval_logits(*loaded.model, inputs), reference, inputs), 0.1);
  const auto adapter = load_adapter(*loaded.model, peft(c.name + "/adapter"));
  EXPECT_LT(max_masked_difference(eval_logits(*loaded.model, inputs), reference, inputs), 1e-4) << c.name;
}

TEST_P(PeftFixtures, ResavedAdapterIsPeftsBytes) {
  const auto& c = GetParam();
  auto loaded = from_pretrained(fixture(c.base + "/single"));
  const auto adapter = load_adapter(*loaded.model, peft(c.name + "/adapter"));
  ScratchDir out;
  const auto original = checkpoint::read_json_file(peft(c.name + "/adapter/adapter_config.json"));
  save_adapter(*adapter, out.path(), original["base_model_name_or_path"]);
  EXPECT_EQ(testing::read_bytes(out / "adapter_model.safetensors"),
            testing::read_bytes(peft(c.name + "/adapter/adapter_model.safetensors")))
      << c.name;
  // The config reads back to the same settings, under every key PEFT wrote.
  const auto written = checkpoint::read_json_file(out / "adapter_config.json");
  for (auto it = original.begin(); it != original.end(); ++it) {
    ASSERT_TRUE(written.contains(it.key())) << it.key();
    if (it.key() != "modules_to_save") {
      EXPECT_EQ(written[it.key()], it.value()) << it.key();
    }
  }
}

TEST_P(PeftFixtures, MergedIsPeftsMergedModel) {
  const auto& c = GetParam();
  auto loaded = from_pretrained(fixture(c.base + "/single"));
  load_adapter(*loaded.model, peft(c.name + "/adapter"))->merge_into_base();
  checkpoint::SafetensorsFile merged(peft(c.name + "/merged/model.safetensors"));
  double worst = 0;
  for (const auto& p : loaded.model->named_parameters()) {
    const auto& entry = merged.entry(p.key());
    auto expected = torch::empty(entry.shape, torch::kFloat32);
    merged.read_into(entry, expected.data_ptr());
    worst = std::max(worst, (p.value().detach() - expected).abs().max().item<double>());
  }
  // Observed: at most 6e-8 (float32 rounding of W + scale B A); PEFT's own merged-vs-adapter
  // logits differ by ~1e-6.
  std::printf("%s: merged weights within %.2g of PEFT's\n", c.name.c_str(), worst);
  EXPECT_LT(worst, 1e-6) << c.name;
  const auto inputs = read_inputs_json(fixture(c.base + "/inputs.json"));
  EXPECT_LT(max_masked_difference(eval_logits(*loaded.model, inputs), peft(c.name + "/logits.npy"), inputs), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Cases, PeftFixtures,
                         ::testing::Values(PeftCase{"llama-qv", "llama"}, PeftCase{"qwen2-all-linear", "../hf-families/qwen2"},
                                           PeftCase{"bert-seqcls", "bert_seqcls"}),
                         [](const auto& info) {
                           std::string n = info.param.name;
                           for (auto& ch : n) ch = std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
                           return n;
                         });

// A random adapter (B random too) on every linear layer of each architecture: its logits equal
// the merged model's. Covers GPT-2's Conv1D (weights stored [in, out]) and Phi-3's fused layers.
TEST(Lora, AdapterAndMergedAgreeOnEveryArchitecture) {
  for (const std::string base : {"gpt2", "llama", "../hf-families/gemma2", "../hf-families/phi3", "bert_seqcls"}) {
    auto loaded = from_pretrained(fixture(base + "/single"));
    LoraSettings s;
    s.r = 3;
    s.lora_alpha = 5;
    s.all_linear = true;
    s.init_lora_weights = false;
    s.use_rslora = true;
    torch::manual_seed(7);
    LoraAdapters adapters(*loaded.model, s, "test");
    adapters.initialise();
    const auto inputs = read_inputs_json(fixture(base + "/inputs.json"));
    const auto base_logits = from_pretrained(fixture(base + "/single")).model;
    const auto with_adapter = eval_logits(*loaded.model, inputs);
    EXPECT_GT((with_adapter - eval_logits(*base_logits, inputs)).abs().max().item<double>(), 1e-3) << base;
    adapters.merge_into_base();
    EXPECT_LT((eval_logits(*loaded.model, inputs) - with_adapter).abs().max().item<double>(), 1e-5) << base;
  }
}

TEST(Lora, NewAdaptersStartAsTheBase) {
  auto loaded = from_pretrained(fixture("llama/single"));
  const auto inputs = read_inputs_json(fixture("llama/inputs.json"));
  const auto before = eval_logits(*loaded.model, inputs);
  LoraSettings s;
  s.target_modules = {"q_proj", "v_proj"};
  LoraAdapters adapters(*loaded.model, s, "test");
  adapters.initialise();
  EXPECT_TRUE(torch::equal(eval_logits(*loaded.model, inputs), before));  // B is zero
  ASSERT_EQ(adapters.tensors().size(), 2u * 2 * 2);  // 2 layers x (q, v) x (A, B)
  const auto& a = adapters.tensors()[0];
  EXPECT_EQ(a.name, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
  // Kaiming-uniform with a = sqrt(5): bound 1 / sqrt(in_features).
  EXPECT_LE(a.tensor.abs().max().item<double>(), 1 / std::sqrt(64.0));
  EXPECT_GT(a.tensor.abs().max().item<double>(), 0.5 / std::sqrt(64.0));
  EXPECT_TRUE(a.tensor.requires_grad());
}

void expect_error(const std::function<void()>& body, const std::string& needle) {
  try {
    body();
    ADD_FAILURE() << "no error; expected one naming: " << needle;
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Lora, BadInputIsNamed) {
  auto loaded = from_pretrained(fixture("llama/single"));
  auto& model = *loaded.model;
  LoraSettings s;
  s.target_modules = {"q_proj", "qproj"};
  expect_error([&] { LoraAdapters a(model, s, "run.json"); }, "run.json: target_modules entry 'qproj' matches no module");
  s.target_modules = {"mlp"};
  expect_error([&] { LoraAdapters a(model, s, "run.json"); }, "model.layers.0.mlp, which is not a linear layer");
  s.target_modules = {"q_proj"};
  s.r = 0;
  expect_error([&] { LoraAdapters a(model, s, "run.json"); }, "r 0 must be a positive rank");
  s.r = 4;
  s.modules_to_save = {"head"};
  expect_error([&] { LoraAdapters a(model, s, "run.json"); }, "modules_to_save entry 'head' is not a module");

  ScratchDir dir;
  const auto copy_adapter = [&](const nlohmann::json& changes) {
    auto config = checkpoint::read_json_file(peft("llama-qv/adapter/adapter_config.json"));
    for (auto it = changes.begin(); it != changes.end(); ++it) config[it.key()] = it.value();
    testing::write_bytes(dir / "adapter_config.json", config.dump());
    fs::copy_file(peft("llama-qv/adapter/adapter_model.safetensors"), dir / "adapter_model.safetensors",
                  fs::copy_options::overwrite_existing);
  };
  copy_adapter({{"use_dora", true}});
  expect_error([&] { load_adapter(model, dir.path()); }, "adapter_config.json: use_dora true is not implemented");
  copy_adapter({{"bias", "all"}});
  expect_error([&] { load_adapter(model, dir.path()); }, "bias \"all\" is not implemented");
  copy_adapter({{"r", 8}});
  expect_error([&] { load_adapter(model, dir.path()); },
               "lora_A.weight is [4, 64] but this base's layer takes [8, 64]: an adapter of another base model");
  copy_adapter({{"target_modules", {"q_proj", "v_proj", "k_proj"}}});
  expect_error([&] { load_adapter(model, dir.path()); }, "k_proj.lora_A.weight is missing");
  copy_adapter({{"target_modules", {"q_proj"}}});
  expect_error([&] { load_adapter(model, dir.path()); }, "v_proj.lora_A.weight belongs to no adapted module");
  // An adapter of another base: a Llama of another width.
  auto config = checkpoint::read_json_file(fixture("llama/single/config.json"));
  config["hidden_size"] = 32;
  config["intermediate_size"] = 48;
  auto narrow = create_model(config, "narrow");
  expect_error([&] { load_adapter(*narrow, peft("llama-qv/adapter")); },
               "q_proj.lora_A.weight is [4, 64] but this base's layer takes [4, 32]");
  expect_error([&] { load_adapter(model, dir / "none"); }, "adapter_config.json");
}

}  // namespace
}  // namespace mpitrain::models
