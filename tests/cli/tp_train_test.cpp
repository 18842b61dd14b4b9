// `mpitrain train` with tensor_parallel_size > 1: dp x tp trains like dp alone, saves the fixtures' bytes, resumes across layouts.
#include <gtest/gtest.h>

#include <tuple>

#include "src/data/hdf5_dataset.h"
#include "tests/cli/train_fixture.h"

namespace mpitrain {
namespace {

std::string fixture(const std::string& path) { return std::string(MPITRAIN_FIXTURES_DIR) + "/" + path; }

class TpTrain : public Train {
 protected:
  // Token data whose ids fit the fixtures' 256-entry vocabularies: raw bytes of the corpus,
  // and the same bytes as labelled rows for the BERT classifier.
  static void SetUpTestSuite() {
    Train::SetUpTestSuite();
    std::string text;
    for (const auto& item : fs::directory_iterator(*scratch_ / "corpus")) text += testing::read_bytes(item.path().string());
    std::vector<std::int32_t> bytes(text.begin(), text.end());
    for (auto& b : bytes) b &= 0xff;
    const auto half = bytes.size() / 2;
    data::write_token_file(*scratch_ / "bytes.h5", {bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(half)},
                           {bytes.begin() + static_cast<std::ptrdiff_t>(half), bytes.end()}, 256);
    data::LabelledRows rows;
    for (std::size_t i = 0; i + 24 <= bytes.size() && rows.ids.size() < 64; i += 24) {
      rows.ids.emplace_back(bytes.begin() + static_cast<std::ptrdiff_t>(i), bytes.begin() + static_cast<std::ptrdiff_t>(i + 24));
      rows.labels.push_back(static_cast<std::int64_t>(rows.ids.size() % 2));
    }
    data::write_classification_file(*scratch_ / "rows.h5", rows, rows, 24, 0, 256);
  }

  // A run from a model directory on the byte data (classification rows for BERT).
  std::string fixture_config(const std::string& name, const std::string& model_dir, bool classification,
                             const json& training) {
    json data = {{"train_file", *scratch_ / (classification ? "rows.h5" : "bytes.h5")}, {"seq_len", 24}};
    if (classification) data["task"] = "classification";
    return write_config(name, training, {{"model", {{"model_name_or_path", model_dir}}}, {"data", data}});
  }

  // The tiny Llama of write_config with a vocabulary 2 and 4 divide (the byte tokenizer has 259).
  std::string llama_config(const std::string& name, const json& training, int tp) {
    const json model = {{"model_type", "llama"}, {"vocab_size", 260}, {"hidden_size", 32}, {"intermediate_size", 64},
                        {"num_hidden_layers", 2}, {"num_attention_heads", 2}, {"num_key_value_heads", 1},
                        {"max_position_embeddings", 64}, {"tie_word_embeddings", true}};
    return write_config(name, training, {{"model", {{"config", model}}}, {"parallel", {{"tensor_parallel_size", tp}}}});
  }
};

TEST_F(TpTrain, DataTimesTensorParallelTrainsLikeDataParallelAlone) {
  // Global batch 4 over 20 steps: dp 4 (reference), dp 2 x tp 2, and dp 1 x tp 2.
  const json base = {{"max_steps", 20}};
  auto r = run(4, "train " + llama_config("dp4", {{"max_steps", 20}, {"per_device_train_batch_size", 1}}, 1));
  ASSERT_EQ(r.status, 0) << r.err;
  const auto reference = losses(out("dp4"));
  ASSERT_EQ(reference.size(), 20u);
  EXPECT_LT(reference.back(), reference.front() - 0.3);
  for (const auto& [np, tp, batch] : {std::tuple<int, int, int>{4, 2, 2}, {2, 2, 4}}) {
    const auto name = "np" + std::to_string(np) + "_tp" + std::to_string(tp);
    r = run(np, "train " + llama_config(name, {{"max_steps", 20}, {"per_device_train_batch_size", batch}}, tp));
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find(std::to_string(np / tp) + " data-parallel x " + std::to_string(tp) + " tensor-parallel"),
              std::string::npos) << r.out;
    const auto ours = losses(out(name));
    ASSERT_EQ(ours.size(), reference.size());
    for (std::size_t i = 0; i < ours.size(); ++i) EXPECT_NEAR(ours[i], reference[i], 2e-4) << name << " step " << i + 1;
    // The saved directory is whole (tp slices put back) and within fp32 reordering of dp alone.
    EXPECT_LT(max_weight_difference(out(name), out("dp4")), 1e-4) << name;
  }
}

TEST_F(TpTrain, StartedFromAFixtureEveryLayoutSavesTheFixtureBytes) {
  // (model, ranks, tp, save_mode): max_steps=0 loads each rank's slices and saves them back.
  const std::vector<std::tuple<std::string, int, int, std::string>> cases = {
      {"llama", 2, 2, "gather"},     {"llama", 2, 2, "parallel"}, {"llama", 4, 2, "parallel"},
      {"llama", 4, 4, "gather"},     {"llama_tied", 2, 2, "parallel"}, {"gpt2", 2, 2, "gather"},
      {"gpt2", 4, 4, "parallel"},    {"bert_seqcls", 2, 2, "parallel"}, {"bert_seqcls", 4, 4, "gather"}};
  for (const auto& [model, np, tp, mode] : cases) {
    const auto name = model + "_np" + std::to_string(np) + "_tp" + std::to_string(tp) + "_" + mode;
    const auto config = fixture_config(name, fixture(model + "/single"), model == "bert_seqcls",
                                       {{"max_steps", 0}, {"save_mode", mode}});
    const auto r = run(np, "train " + config + " --tensor_parallel_size=" + std::to_string(tp));
    ASSERT_EQ(r.status, 0) << name << "\n" << r.err;
    EXPECT_TRUE(testing::read_bytes(out(name) + "/model.safetensors") ==
                testing::read_bytes(fixture(model + "/single/model.safetensors"))) << name;
  }
}

TEST_F(TpTrain, CheckpointsResumeAtAnotherLayout) {
  // Saved at one (dp, tp), resumed at another with the same global batch: the optimizer
  // moments and weights are resharded, and the losses continue as the uninterrupted run's.
  struct Layout {
    int np, tp, batch;
  };
  const std::vector<std::tuple<Layout, Layout, std::string>> cases = {
      {{2, 1, 2}, {2, 2, 4}, "sharded"}, {{2, 2, 4}, {4, 1, 1}, "parallel"}, {{4, 2, 2}, {2, 1, 2}, "gather"}};
  int k = 0;
  for (const auto& [saved, resumed, mode] : cases) {
    const auto name = "reshard" + std::to_string(k++);
    const json saving = {{"max_steps", 8}, {"save_strategy", "steps"}, {"save_steps", 4}, {"save_mode", mode},
                         {"per_device_train_batch_size", saved.batch}};
    auto r = run(saved.np, "train " + llama_config(name, saving, saved.tp));
    ASSERT_EQ(r.status, 0) << name << "\n" << r.err;
    json resuming = saving;
    resuming["per_device_train_batch_size"] = resumed.batch;
    resuming["resume_from_checkpoint"] = out(name) + "/checkpoint-4";
    r = run(resumed.np, "train " + llama_config(name + "_resumed", resuming, resumed.tp));
    ASSERT_EQ(r.status, 0) << name << "\n" << r.err;
    const auto a = losses(out(name)), b = losses(out(name + "_resumed"));
    ASSERT_EQ(b.size(), 4u) << name;
    for (std::size_t i = 0; i < 4; ++i) EXPECT_NEAR(a[4 + i], b[i], 2e-4) << name << " step " << 5 + i;
    EXPECT_LT(max_weight_difference(out(name), out(name + "_resumed")), 1e-4) << name;
  }
}

TEST_F(TpTrain, LayoutsTheModelOrWorldDoNotAllowAreOneLineErrors) {
  expect_one_line_error(run(4, "train " + llama_config("tp3", {}, 3)),
                        "tensor_parallel_size 3 does not divide the 4 ranks");
  // The byte tokenizer's 259 entries cannot be split over 2 ranks.
  expect_one_line_error(run(2, "train " + write_config("vocab", {}) + " --tensor_parallel_size=2"),
                        "vocab_size 259 is not divisible by tensor_parallel_size 2");
}

}  // namespace
}  // namespace mpitrain
