// HF directories: size parsing, the greedy shard plan, the index, stale files, and each malformed directory.
#include <gtest/gtest.h>

#include <filesystem>

#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/hf_index.h"
#include "runtime/checkpoint/hf_weights.h"
#include "runtime/checkpoint/inspect.h"
#include "runtime/checkpoint/safetensors_header.h"
#include "tests/unit/test_files.h"

namespace mpitrain::checkpoint {
namespace {

namespace fs = std::filesystem;
using testing::ScratchDir;

TEST(ShardSize, ParsesTransformersUnits) {
  EXPECT_EQ(parse_shard_size("5GB"), 5'000'000'000u);
  EXPECT_EQ(parse_shard_size("100KB"), 100'000u);
  EXPECT_EQ(parse_shard_size("2GiB"), 2ull << 30);
  EXPECT_EQ(parse_shard_size("10MiB"), 10ull << 20);
  EXPECT_EQ(parse_shard_size("8Mb"), 1'000'000u);
  EXPECT_EQ(parse_shard_size("12345"), 12345u);
  EXPECT_THROW(parse_shard_size("5 parsecs"), std::invalid_argument);
  EXPECT_THROW(parse_shard_size("GB"), std::invalid_argument);
}

TEST(ShardPlan, GreedyInStateDictOrderWithOversizedTensorsAlone) {
  const auto plan = plan_shards({60, 30, 20, 200, 10}, 100);
  EXPECT_EQ(plan, (std::vector<std::vector<std::size_t>>{{0, 1}, {3}, {2, 4}}));
  EXPECT_EQ(plan_shards({10, 10}, 100).size(), 1u);
  EXPECT_EQ(plan_shards({100, 1}, 100), (std::vector<std::vector<std::size_t>>{{0}, {1}}));
}

TEST(ShardIndex, FileNamesAndJsonMatchTransformers) {
  EXPECT_EQ(shard_file_name(0, 5), "model-00001-of-00005.safetensors");
  ShardIndex index;
  index.total_size = 12;
  index.weight_map = {{"b", "model-00002-of-00002.safetensors"}, {"a", "model-00001-of-00002.safetensors"}};
  EXPECT_EQ(shard_index_to_json(index),
            "{\n  \"metadata\": {\n    \"total_size\": 12\n  },\n  \"weight_map\": {\n"
            "    \"a\": \"model-00001-of-00002.safetensors\",\n    \"b\": \"model-00002-of-00002.safetensors\"\n  }\n}\n");
  // The fixtures' own index parses and re-serialises to the same bytes.
  const auto text = testing::read_bytes(testing::fixture("llama/sharded/model.safetensors.index.json"));
  EXPECT_EQ(shard_index_to_json(parse_shard_index(text, "fixture")), text);
}

// Four F32 tensors written as two shards by the library itself.
std::vector<float> kData(64, 1.5f);
std::vector<TensorBytes> four_tensors() {
  std::vector<TensorBytes> t;
  for (const char* name : {"w0", "w1", "w2", "w3"}) t.push_back({{name, DType::F32, {4, 4}}, kData.data()});
  return t;
}

TEST(HfWeights, SavesShardsAndLoadsThemBack) {
  ScratchDir dir;
  const auto saved = save_hf_weights(dir.path(), four_tensors(), 128);
  ASSERT_TRUE(saved.sharded);
  EXPECT_EQ(saved.files, (std::vector<std::string>{"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}));
  auto weights = HfWeights::open(dir.path());
  EXPECT_EQ(weights.names(), (std::vector<std::string>{"w0", "w1", "w2", "w3"}));
  EXPECT_EQ(fs::path(weights.file_of("w3").path()).filename(), "model-00002-of-00002.safetensors");
  EXPECT_TRUE(inspect_checkpoint(dir.path()).problems.empty());
}

TEST(HfWeights, RemovesStaleFilesOfAnEarlierSave) {
  ScratchDir dir;
  save_hf_weights(dir.path(), four_tensors(), 64);  // four shards
  testing::write_bytes(dir / "pytorch_model.bin", "old");
  testing::write_bytes(dir / "notes.txt", "keep me");
  save_hf_weights(dir.path(), four_tensors(), 1'000'000);  // now one file
  std::vector<std::string> names;
  for (const auto& item : fs::directory_iterator(dir.path())) names.push_back(item.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"model.safetensors", "notes.txt"}));
  save_hf_weights(dir.path(), four_tensors(), 128);  // and back to two shards
  EXPECT_FALSE(fs::exists(dir / "model.safetensors"));
  EXPECT_TRUE(inspect_checkpoint(dir.path()).problems.empty());
}

void expect_open_fails(const std::string& path, const std::string& needle, const std::string& names_file) {
  try {
    HfWeights::open(path);
    FAIL() << "expected failure with '" << needle << "'";
  } catch (const CheckpointError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(needle), std::string::npos) << message;
    EXPECT_NE(message.find(names_file), std::string::npos) << message;
  }
}

void write_index(const std::string& dir, const std::string& weight_map_json, const std::string& extra = "") {
  testing::write_bytes(dir + "/model.safetensors.index.json",
                       "{\"metadata\": {" + extra + "}, \"weight_map\": " + weight_map_json + "}");
}

TEST(HfWeightsRejects, IndexNamingAMissingShard) {
  ScratchDir dir;
  save_hf_weights(dir.path(), four_tensors(), 128);
  fs::remove(dir / "model-00002-of-00002.safetensors");
  expect_open_fails(dir.path(), "names shard 'model-00002-of-00002.safetensors', which does not exist",
                    "model.safetensors.index.json");
}

TEST(HfWeightsRejects, IndexPathOutsideTheDirectory) {
  ScratchDir dir;
  write_index(dir.path(), R"({"w": "../x.safetensors"})");
  expect_open_fails(dir.path(), "points outside the directory: '../x.safetensors'", "index.json");
  write_index(dir.path(), R"({"w": "/etc/passwd"})");
  expect_open_fails(dir.path(), "points outside the directory: '/etc/passwd'", "index.json");
}

TEST(HfWeightsRejects, IndexAndShardsThatDisagree) {
  ScratchDir dir;
  save_hf_weights(dir.path(), four_tensors(), 128);
  // w3 lives in shard 2 but the index says shard 1.
  write_index(dir.path(),
              R"({"w0": "model-00001-of-00002.safetensors", "w1": "model-00001-of-00002.safetensors",
                  "w2": "model-00002-of-00002.safetensors", "w3": "model-00001-of-00002.safetensors"})");
  expect_open_fails(dir.path(), "index puts tensor 'w3' in 'model-00001-of-00002.safetensors'", "index.json");
  // The index forgets w3 altogether.
  write_index(dir.path(),
              R"({"w0": "model-00001-of-00002.safetensors", "w1": "model-00001-of-00002.safetensors",
                  "w2": "model-00002-of-00002.safetensors"})");
  expect_open_fails(dir.path(), "holds tensor 'w3', which the index does not list", "index.json");
  // Names right, size wrong.
  write_index(dir.path(),
              R"({"w0": "model-00001-of-00002.safetensors", "w1": "model-00001-of-00002.safetensors",
                  "w2": "model-00002-of-00002.safetensors", "w3": "model-00002-of-00002.safetensors"})",
              "\"total_size\": 7");
  expect_open_fails(dir.path(), "total_size is 7 but the shards hold 256", "index.json");
}

TEST(HfWeightsRejects, NumbersJsonCannotHold) {
  // Found by the fuzzer: an overflowing number is a JSON error of another class than a syntax error.
  EXPECT_THROW(parse_shard_index(R"({"weight_map": {}, "metadata": {"total_size": 2211e444444}})", "x"), CheckpointError);
  EXPECT_THROW(parse_shard_index(R"({"weight_map": {}, "metadata": {"total_size": -3}})", "x"), CheckpointError);
  const std::string huge = R"({"a":{"dtype":"F32","shape":[1e99999],"data_offsets":[0,4]}})";
  EXPECT_THROW(parse_safetensors_header_json(huge, 4, "x"), CheckpointError);
}

TEST(HfWeightsRejects, InvalidIndexJsonAndEmptyDirectory) {
  ScratchDir dir;
  expect_open_fails(dir.path(), "no model.safetensors", dir.path());
  testing::write_bytes(dir / "model.safetensors.index.json", "{\"weight_map\": ");
  expect_open_fails(dir.path(), "invalid JSON", "index.json");
}

TEST(Inspect, ReportsEveryProblemOfADirectory) {
  ScratchDir dir;
  save_hf_weights(dir.path(), four_tensors(), 128);
  testing::write_bytes(dir / "model-00003-of-00003.safetensors", "garbage!");
  write_index(dir.path(), R"({"w0": "model-00001-of-00002.safetensors", "w9": "model-00009-of-00009.safetensors"})");
  const auto report = inspect_checkpoint(dir.path());
  std::string all;
  for (const auto& p : report.problems) all += p + "\n";
  EXPECT_NE(all.find("model-00003-of-00003.safetensors: header"), std::string::npos) << all;
  EXPECT_NE(all.find("names shard 'model-00009-of-00009.safetensors'"), std::string::npos) << all;
  EXPECT_NE(all.find("holds tensor 'w1', which the index does not list"), std::string::npos) << all;
  EXPECT_NE(all.find("'model-00002-of-00002.safetensors' is not referenced"), std::string::npos) << all;
  EXPECT_EQ(report.tensors.size(), 4u);
}

TEST(Inspect, FixturesAreClean) {
  for (const char* dir : {"llama/single", "llama/sharded", "llama/bf16", "gpt2/sharded", "bert_seqcls/sharded"}) {
    const auto report = inspect_checkpoint(testing::fixture(dir));
    EXPECT_TRUE(report.problems.empty()) << dir << ": " << report.problems.front();
    EXPECT_GT(report.total_bytes, 0u);
  }
}

}  // namespace
}  // namespace mpitrain::checkpoint
