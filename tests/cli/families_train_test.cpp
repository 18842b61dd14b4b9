// `mpitrain train` on the five families of ../hf-families: every layout and save mode saves the fixture's bytes, and dp 2 x tp 2 and ZeRO-3 train as dp 4 does.
#include <gtest/gtest.h>

#include <cmath>
#include <tuple>

#include "runtime/checkpoint/safetensors_file.h"

#include "tests/cli/layout_train_fixture.h"

namespace mpitrain {
namespace {

class FamiliesTrain : public LayoutTrain {
 protected:
  static std::string family_dir(const std::string& family) { return fixture("../hf-families/" + family + "/single"); }

  // The largest difference between two saved float32 models, and the tensor it is in. Qwen2's
  // k_proj.bias is left out: adding one vector to every key shifts each query's scores by a
  // constant, which softmax ignores, so its gradient is 0 up to rounding, and AdamW turns that
  // noise into steps near the learning rate that differ with the order of the sums.
  static std::pair<double, std::string> worst_difference(const std::string& a, const std::string& b) {
    checkpoint::SafetensorsFile fa(a + "/model.safetensors"), fb(b + "/model.safetensors");
    std::pair<double, std::string> worst{0.0, ""};
    for (const auto& e : fa.header().tensors) {
      if (e.name.size() > 11 && e.name.compare(e.name.size() - 11, 11, "k_proj.bias") == 0) continue;
      const auto* x = reinterpret_cast<const float*>(fa.data(e));
      const auto* y = reinterpret_cast<const float*>(fb.data(fb.entry(e.name)));
      for (std::int64_t i = 0; i < e.numel(); ++i)
        if (std::fabs(x[i] - y[i]) > worst.first) worst = {std::fabs(x[i] - y[i]), e.name};
    }
    return worst;
  }
};

const std::vector<std::string> kFamilies = {"qwen2", "mistral", "gemma", "gemma2", "phi3"};

TEST_F(FamiliesTrain, StartedFromEachFixtureEveryLayoutAndSaveModeSavesItsBytes) {
  // At np 4: dp 2 x tp 2, zero3 over 4, zero3 x tp 2. The save modes rotate over the families
  // so that each family meets all three and each layout all three; max_steps=0 saves the loaded
  // slices back (gather, parallel), and one step at learning rate 0 saves a sharded checkpoint,
  // consolidated by `consolidate`.
  const std::vector<std::pair<int, std::string>> layouts = {{2, "none"}, {1, "zero3"}, {2, "zero3"}};
  const std::vector<std::string> modes = {"gather", "parallel", "sharded"};
  for (std::size_t f = 0; f < kFamilies.size(); ++f)
    for (std::size_t l = 0; l < layouts.size(); ++l) {
      const auto& family = kFamilies[f];
      const auto& [tp, sharding] = layouts[l];
      const auto& mode = modes[(f + l) % modes.size()];
      const auto name = family + "_tp" + std::to_string(tp) + "_" + sharding + "_" + mode;
      json training = {{"max_steps", 0}, {"save_mode", mode}};
      if (mode == "sharded")
        training = {{"max_steps", 1}, {"learning_rate", 0.0}, {"save_mode", mode}, {"save_strategy", "steps"},
                    {"save_steps", 1}};
      auto r = run(4, "train " + fixture_config(name, family_dir(family), false, training) +
                          " --tensor_parallel_size=" + std::to_string(tp) + " --sharding=" + sharding);
      ASSERT_EQ(r.status, 0) << name << "\n" << r.err;
      auto saved = out(name);
      if (mode == "sharded") {
        r = run(2, "consolidate " + out(name) + "/checkpoint-1 " + out(name + "_consolidated"));
        ASSERT_EQ(r.status, 0) << name << "\n" << r.err;
        saved = out(name + "_consolidated");
      }
      EXPECT_TRUE(testing::read_bytes(saved + "/model.safetensors") ==
                  testing::read_bytes(family_dir(family) + "/model.safetensors"))
          << name;
    }
}

TEST_F(FamiliesTrain, DataTimesTensorParallelAndZero3TrainEachFamilyAsDataParallelAlone) {
  // Global batch 4 over 20 steps of 24 tokens (past the fixtures' windows of 6): dp 4 is the
  // reference; dp 2 x tp 2 and zero3 over 4 give its losses and weights.
  for (const auto& family : kFamilies) {
    const auto config = [&](const std::string& name, int batch) {
      return fixture_config(name, family_dir(family), false,
                            {{"max_steps", 20}, {"per_device_train_batch_size", batch}, {"learning_rate", 3e-3}});
    };
    auto r = run(4, "train " + config(family + "_dp4", 1));
    ASSERT_EQ(r.status, 0) << family << "\n" << r.err;
    const auto reference = losses(out(family + "_dp4"));
    ASSERT_EQ(reference.size(), 20u) << family;
    EXPECT_LT(reference.back(), reference.front()) << family;
    for (const auto& [name, batch, flags] :
         {std::tuple<std::string, int, std::string>{family + "_dp2_tp2", 2, " --tensor_parallel_size=2"},
          {family + "_zero3", 1, " --sharding=zero3"}}) {
      r = run(4, "train " + config(name, batch) + flags);
      ASSERT_EQ(r.status, 0) << name << "\n" << r.err;
      const auto ours = losses(out(name));
      ASSERT_EQ(ours.size(), reference.size()) << name;
      for (std::size_t i = 0; i < ours.size(); ++i) EXPECT_NEAR(ours[i], reference[i], 2e-4) << name << " step " << i + 1;
      const auto [difference, tensor] = worst_difference(out(name), out(family + "_dp4"));
      EXPECT_LT(difference, 1e-4) << name << ": " << tensor;
    }
  }
}

TEST_F(FamiliesTrain, EachFamilyTrainsFromAConfigAndItsSaveServesLogitsAndGenerate) {
  // model.config with each model_type (sizes of no fixture, windows shorter than the rows), at
  // np 2 under tp 2; the saved directory loads in `logits` and `generate`.
  const json sizes = {{"vocab_size", 260}, {"hidden_size", 32}, {"intermediate_size", 48}, {"num_hidden_layers", 2},
                      {"num_attention_heads", 4}, {"num_key_value_heads", 2}, {"max_position_embeddings", 64}};
  for (const auto& family : kFamilies) {
    json model = sizes;
    model["model_type"] = family;
    if (family == "mistral" || family == "gemma2") model["sliding_window"] = 5;
    if (family == "gemma" || family == "gemma2") model["head_dim"] = 12;
    const auto name = family + "_scratch";
    auto config = json::parse(testing::read_bytes(write_config(name, {{"max_steps", 3}})));
    config["model"] = {{"config", model}};
    config["parallel"]["tensor_parallel_size"] = 2;
    testing::write_bytes(local_ / (name + ".json"), config.dump());
    auto r = run(2, "train " + (local_ / (name + ".json")));
    ASSERT_EQ(r.status, 0) << name << "\n" << r.err;
    EXPECT_EQ(losses(out(name)).size(), 3u) << name;
    const auto saved = json::parse(testing::read_bytes(out(name) + "/config.json"));
    EXPECT_EQ(saved["model_type"], family);
    testing::write_bytes(local_ / "inputs.json", R"({"input_ids": [[5, 9, 17, 33, 2, 7, 8, 9]]})");
    r = run(0, "logits " + out(name) + " --inputs " + (local_ / "inputs.json") + " --output " + (local_ / (name + ".npy")));
    EXPECT_EQ(r.status, 0) << name << "\n" << r.err;
    r = run(0, "generate " + out(name) + " --prompt 'The union' --max_new_tokens 4 --temperature 0");
    EXPECT_EQ(r.status, 0) << name << "\n" << r.err;
    EXPECT_EQ(r.out.rfind("The union", 0), 0u) << r.out;
  }
}

}  // namespace
}  // namespace mpitrain
