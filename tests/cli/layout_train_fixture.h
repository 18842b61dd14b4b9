// The fixture of the layout tests (tp, ZeRO): byte data for the HF fixtures' vocabularies and tiny Llama configs.
#pragma once

#include <string>
#include <vector>

#include "src/data/hdf5_dataset.h"
#include "tests/cli/train_fixture.h"

namespace mpitrain {

inline std::string fixture(const std::string& path) { return std::string(MPITRAIN_FIXTURES_DIR) + "/" + path; }

class LayoutTrain : public Train {
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
  std::string llama_config(const std::string& name, const json& training, int tp,
                           const std::string& sharding = "none", bool tied = true) {
    const json model = {{"model_type", "llama"}, {"vocab_size", 260}, {"hidden_size", 32}, {"intermediate_size", 64},
                        {"num_hidden_layers", 2}, {"num_attention_heads", 2}, {"num_key_value_heads", 1},
                        {"max_position_embeddings", 64}, {"tie_word_embeddings", tied}};
    return write_config(name, training, {{"model", {{"config", model}}}, {"parallel", {{"tensor_parallel_size", tp}, {"sharding", sharding}}}});
  }
};

}  // namespace mpitrain
