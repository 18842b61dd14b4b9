// The mpitrain binary as a user runs it: logits parity, inspect, convert, and one-line errors with exit codes.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "runtime/checkpoint/npy.h"
#include "tests/unit/test_files.h"

namespace mpitrain {
namespace {

namespace fs = std::filesystem;
using testing::fixture;
using testing::ScratchDir;

struct Result {
  int status;
  std::string out;  // stdout
  std::string err;  // stderr
};

// `environment`: VAR=value settings for the command.
Result run(const std::string& arguments, const std::string& environment = "") {
  ScratchDir scratch;
  // Under timeout: a command that blocks (a FIFO opened for reading) fails with status 124.
  const std::string command = environment + " timeout 60 " + std::string(MPITRAIN_BINARY) + " " + arguments + " >" +
                              (scratch / "out") + " 2>" + (scratch / "err");
  const int raw = std::system(command.c_str());
  return {WIFEXITED(raw) ? WEXITSTATUS(raw) : 128, testing::read_bytes(scratch / "out"),
          testing::read_bytes(scratch / "err")};
}

void expect_one_line_error(const Result& r, const std::string& needle) {
  EXPECT_NE(r.status, 0);
  EXPECT_EQ(r.err.rfind("mpitrain: error: ", 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
}

double masked_max_difference(const checkpoint::NpyArray& ours, const checkpoint::NpyArray& reference,
                             std::int64_t valid_in_second_row) {
  double worst = 0;
  const auto per_position = ours.shape.size() == 3 ? ours.shape[2] : ours.shape[1];
  for (std::size_t i = 0; i < ours.data.size(); ++i) {
    if (ours.shape.size() == 3) {
      const auto position = static_cast<std::int64_t>(i) / per_position;
      const auto row = position / ours.shape[1], column = position % ours.shape[1];
      if (row == 1 && column >= valid_in_second_row) continue;
    }
    worst = std::max(worst, static_cast<double>(std::fabs(ours.data[i] - reference.data[i])));
  }
  return worst;
}

TEST(Cli, LogitsMatchTheReferenceForEveryFamily) {
  for (const std::string model : {"llama", "gpt2", "bert_seqcls"}) {
    ScratchDir scratch;
    const auto r = run("logits " + fixture(model + "/sharded") + " --inputs " + fixture(model + "/inputs.json") +
                       " --output " + (scratch / "logits.npy"));
    ASSERT_EQ(r.status, 0) << r.err;
    const auto ours = checkpoint::read_npy_float32(scratch / "logits.npy");
    const auto reference = checkpoint::read_npy_float32(fixture(model + "/logits.npy"));
    ASSERT_EQ(ours.shape, reference.shape);
    EXPECT_LT(masked_max_difference(ours, reference, 13), 1e-4) << model;  // row 2 has 13 real tokens
  }
}

TEST(Cli, InspectListsTensorsAndTotals) {
  const auto r = run("inspect " + fixture("llama/sharded"));
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("model.layers.1.mlp.down_proj.weight"), std::string::npos);
  EXPECT_NE(r.out.find("total: 21 tensors, 106816 elements, 427264 bytes in 5 file(s)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("no problems found"), std::string::npos);
}

TEST(Cli, InspectReportsProblemsAndFails) {
  ScratchDir scratch;
  fs::copy(fixture("llama/sharded"), scratch / "m");
  fs::copy(fixture("llama/sharded"), scratch / "v");
  fs::resize_file(scratch / "m/model-00002-of-00005.safetensors", 1000);
  auto r = run("inspect " + (scratch / "m"));
  expect_one_line_error(r, "model-00002-of-00005.safetensors");
  EXPECT_NE(r.out.find("run past the end"), std::string::npos) << r.out;
  // A config that does not fit the tensors: every misfit is listed.
  auto config = testing::read_bytes(scratch / "v/config.json");
  config.replace(config.find("\"vocab_size\": 256"), 17, "\"vocab_size\": 300");
  testing::write_bytes(scratch / "v/config.json", config);
  r = run("inspect " + (scratch / "v"));
  expect_one_line_error(r, "config.json implies");
  EXPECT_NE(r.out.find("'model.embed_tokens.weight' has shape [256,64] but config.json implies [300,64]"),
            std::string::npos) << r.out;
  EXPECT_NE(r.out.find("'lm_head.weight' has shape [256,64] but config.json implies [300,64]"), std::string::npos);
}

TEST(Cli, BadInputsGiveOneLineErrorsAndNonZeroStatus) {
  ScratchDir scratch;
  testing::write_bytes(scratch / "trunc.safetensors", "\x10\0\0\0\0\0\0\0{\"a\"");
  expect_one_line_error(run("inspect " + (scratch / "trunc.safetensors")), "trunc.safetensors");
  fs::copy(fixture("gpt2/single"), scratch / "g");
  testing::write_bytes(scratch / "g/config.json", "{\"model_type\": \"gpt2\"}");
  expect_one_line_error(run("logits " + (scratch / "g") + " --inputs " + fixture("gpt2/inputs.json") + " --output " +
                            (scratch / "x.npy")),
                        "config.json: missing required key 'vocab_size'");
  EXPECT_FALSE(fs::exists(scratch / "x.npy"));
  expect_one_line_error(run("logits " + fixture("gpt2/single")), "--inputs");
  // Rows longer than the positions (rotary ones used to run on silently), and a batch larger
  // than memory (it used to grow past 23 GB): refused before the forward.
  testing::write_bytes(scratch / "long.json", nlohmann::json{{"input_ids", {std::vector<int>(5000, 1)}}}.dump());
  expect_one_line_error(run("logits " + fixture("llama/single") + " --inputs " + (scratch / "long.json") + " --output " +
                            (scratch / "x.npy")),
                        "long.json: rows of 5000 tokens exceed the model's max_position_embeddings 128");
  // (The batch is sized against MPITRAIN_MEMORY_AVAILABLE, so it is refused on any machine.)
  testing::write_bytes(scratch / "wide.json",
                       nlohmann::json{{"input_ids", std::vector<std::vector<int>>(2000, std::vector<int>(128, 1))}}.dump());
  expect_one_line_error(run("logits " + fixture("llama/single") + " --inputs " + (scratch / "wide.json") + " --output " +
                            (scratch / "x.npy"), "MPITRAIN_MEMORY_AVAILABLE=100000000"),
                        "wide.json: 2000 rows of 128 tokens take about 1.7 GB to run through this model but this host "
                        "has 100.0 MB available");
  EXPECT_FALSE(fs::exists(scratch / "x.npy"));
  expect_one_line_error(run("frobnicate"), "unknown command 'frobnicate'");
  expect_one_line_error(run("convert " + fixture("llama/single") + " " + (scratch / "o") + " --max_shard_size=lots"),
                        "max_shard_size 'lots'");
  // A tokenizer with more ids than the model has embeddings: refused, nothing written.
  testing::write_bytes(scratch / "small.json", R"({"model_type": "bert", "vocab_size": 259, "hidden_size": 32,
      "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64})");
  expect_one_line_error(run("init " + (scratch / "small.json") + " " + (scratch / "small") + " --tokenizer " +
                            std::string(MPITRAIN_FIXTURES_DIR) + "/../tokenizers/wordpiece-uncased"),
                        "the tokenizer has 3903 ids but " + (scratch / "small.json") + " gives vocab_size 259");
  EXPECT_FALSE(fs::exists(scratch / "small"));
  // Into the directory it reads (a copy: the fixture stays untouched whatever happens).
  fs::copy(fixture("llama/single"), scratch / "same");
  const auto before = testing::read_bytes(scratch / "same/model.safetensors");
  expect_one_line_error(run("convert " + (scratch / "same") + " " + (scratch / "same/") + " --dtype bfloat16"),
                        "it would be written while it is read");
  EXPECT_EQ(testing::read_bytes(scratch / "same/model.safetensors"), before);
}

TEST(Cli, AFifoOrADeeplyNestedFileIsAnErrorNotAHangOrACrash) {
  ScratchDir scratch;
  // inspect, logits and convert on a directory whose weights are a FIFO: each used to block in
  // open() forever. Run under timeout so a regression fails instead of hanging the suite.
  fs::copy(fixture("llama/single"), scratch / "fifo");
  fs::remove(scratch / "fifo/model.safetensors");
  ASSERT_EQ(::mkfifo((scratch / "fifo/model.safetensors").c_str(), 0644), 0);
  for (const std::string& command : {"inspect " + (scratch / "fifo"),
                                     "convert " + (scratch / "fifo") + " " + (scratch / "out1") + " --verify_checksums=false"}) {
    const auto r = run(command);
    EXPECT_NE(r.status, 124) << command << ": still blocked after 60 s";
    EXPECT_NE(r.status, 0) << command;
    EXPECT_NE((r.out + r.err).find("model.safetensors: is a FIFO"), std::string::npos) << command << "\n" << r.out << r.err;
  }
  // A config.json nested 100,000 levels deep crashed convert (signal 11): one line now.
  fs::copy(fixture("llama/single"), scratch / "deep");
  testing::write_bytes(scratch / "deep/config.json", std::string(100000, '[') + std::string(100000, ']'));
  expect_one_line_error(run("convert " + (scratch / "deep") + " " + (scratch / "out2")),
                        "config.json: JSON nested deeper than 512 levels");
  EXPECT_FALSE(fs::exists(scratch / "out2/model.safetensors"));
  // So did a run config with one value nested that deep.
  testing::write_bytes(scratch / "run.json", "{\"model\": {\"config\": " + std::string(100000, '[') +
                                                 std::string(100000, ']') + "}}");
  expect_one_line_error(run("train " + (scratch / "run.json")), "run.json: JSON nested deeper than 512 levels");
}

TEST(Cli, TokenizeGivesTheLibrarysIdsAndDecodesThemBack) {
  ScratchDir scratch;
  const std::string dir = std::string(MPITRAIN_FIXTURES_DIR) + "/../tokenizers/wordpiece-uncased";
  // The library's own cases as input: their "text" (and "text_pair") lines.
  auto r = run("tokenize " + dir + " --input " + dir + "/cases.jsonl --output " + (scratch / "ids.jsonl"));
  ASSERT_EQ(r.status, 0) << r.err;
  std::ifstream cases(dir + "/cases.jsonl"), ours(scratch / "ids.jsonl");
  std::string expected_line, our_line;
  int lines = 0;
  while (std::getline(cases, expected_line) && std::getline(ours, our_line)) {
    const auto expected = nlohmann::json::parse(expected_line), got = nlohmann::json::parse(our_line);
    EXPECT_EQ(got["ids"], expected.contains("text_pair") ? expected["pair_ids"] : expected["ids"]) << expected_line;
    ++lines;
  }
  EXPECT_EQ(lines, 281);
  r = run("tokenize " + dir + " --input " + (scratch / "ids.jsonl") + " --output " + (scratch / "text.jsonl") +
          " --decode --skip_special_tokens=false");
  ASSERT_EQ(r.status, 0) << r.err;
  std::ifstream decoded(scratch / "text.jsonl");
  std::getline(decoded, our_line);
  EXPECT_EQ(nlohmann::json::parse(our_line)["text"], "[CLS] [SEP] [SEP]");  // "" and "\n" as a pair
  // Bad lines: named by file and line; no output written.
  testing::write_bytes(scratch / "bad.jsonl", "{\"text\": \"ok\"}\n{\"txt\": \"no\"}\n");
  expect_one_line_error(run("tokenize " + dir + " --input " + (scratch / "bad.jsonl") + " --output " + (scratch / "o.jsonl")),
                        "bad.jsonl:2: needs \"text\" (a string)");
  testing::write_bytes(scratch / "bad_ids.jsonl", "{\"ids\": [1, 99999]}\n");
  expect_one_line_error(run("tokenize " + dir + " --decode --input " + (scratch / "bad_ids.jsonl") + " --output " +
                            (scratch / "o.jsonl")),
                        "bad_ids.jsonl:1: id 99999 is not in the vocabulary");
  EXPECT_FALSE(fs::exists(scratch / "o.jsonl"));
  expect_one_line_error(run("tokenize " + (scratch / "") + " --input " + (scratch / "bad.jsonl") + " --output " +
                            (scratch / "o.jsonl")),
                        ": no tokenizer.json");
}

// A PEFT adapter through the binary: logits --adapter are PEFT's, convert --adapter writes the
// merged model PEFT wrote (its logits the same), and a wrong adapter is one line.
TEST(Cli, LoraAdapterLogitsAndMerge) {
  ScratchDir scratch;
  const auto adapter = fixture("../peft/llama-qv/adapter");
  auto r = run("logits " + fixture("llama/single") + " --inputs " + fixture("llama/inputs.json") + " --output " +
               (scratch / "adapted.npy") + " --adapter " + adapter);
  ASSERT_EQ(r.status, 0) << r.err;
  const auto reference = checkpoint::read_npy_float32(fixture("../peft/llama-qv/logits.npy"));
  EXPECT_LT(masked_max_difference(checkpoint::read_npy_float32(scratch / "adapted.npy"), reference, 13), 1e-4);
  r = run("convert " + fixture("llama/single") + " " + (scratch / "merged") + " --adapter " + adapter);
  ASSERT_EQ(r.status, 0) << r.err;
  r = run("logits " + (scratch / "merged") + " --inputs " + fixture("llama/inputs.json") + " --output " +
          (scratch / "merged.npy"));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_LT(masked_max_difference(checkpoint::read_npy_float32(scratch / "merged.npy"), reference, 13), 1e-4);
  expect_one_line_error(run("logits " + fixture("llama/single") + " --inputs " + fixture("llama/inputs.json") +
                            " --output " + (scratch / "x.npy") + " --adapter " + fixture("../peft/bert-seqcls/adapter")),
                        "target_modules entry 'query' matches no module of LlamaForCausalLM");
}

TEST(Cli, ConvertChangesDtypeAndSharding) {
  ScratchDir scratch;
  auto r = run("convert " + fixture("llama/bf16") + " " + (scratch / "f32") + " --dtype float32 --max_shard_size 100KB");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(fs::exists(scratch / "f32/model.safetensors.index.json"));
  r = run("inspect " + (scratch / "f32"));
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("F32"), std::string::npos);
  EXPECT_EQ(r.out.find("BF16"), std::string::npos);
  // And back: float32 -> bfloat16 reproduces the transformers-written bf16 file exactly.
  r = run("convert " + (scratch / "f32") + " " + (scratch / "bf16") + " --dtype bfloat16");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(testing::read_bytes(scratch / "bf16/model.safetensors") ==
              testing::read_bytes(fixture("llama/bf16/model.safetensors")));
}

}  // namespace
}  // namespace mpitrain
