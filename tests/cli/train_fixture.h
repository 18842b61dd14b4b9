// The fixture of the `mpitrain train` tests: running the binary under mpirun, a tiny corpus, configs, metrics.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "runtime/checkpoint/safetensors_file.h"
#include "tests/unit/test_files.h"

namespace mpitrain {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::ScratchDir;

struct Result {
  int status;
  std::string out, err;
};

// Runs `mpitrain ARGS` under mpirun with `np` ranks (np = 0: without mpirun).
inline Result run(int np, const std::string& arguments, const std::string& environment = "") {
  ScratchDir scratch;
  std::string command = std::string(MPITRAIN_BINARY) + " " + arguments;
  if (!environment.empty()) command = "env " + environment + " " + command;
  if (np > 0) command = std::string(MPITRAIN_MPIEXEC) + " -np " + std::to_string(np) + " " + command;
  command += " >" + (scratch / "out") + " 2>" + (scratch / "err");
  const int raw = std::system(command.c_str());
  return {WIFEXITED(raw) ? WEXITSTATUS(raw) : 128, testing::read_bytes(scratch / "out"),
          testing::read_bytes(scratch / "err")};
}

// `mpitrain train CONFIG` started in the background (under mpirun when np > 0): its stdout and
// stderr go to `base`.out and .err, its exit status to `base`.status once it ends. Its rank
// processes never outlive the test: they are killed when this goes out of scope.
class BackgroundTrain {
 public:
  BackgroundTrain(int np, const std::string& config, const std::string& base)
      : out_(base + ".out"), err_(base + ".err"), status_(base + ".status"),
        ranks_("'^" + std::string(MPITRAIN_BINARY) + " train " + config + "'") {
    std::string command = std::string(MPITRAIN_BINARY) + " train " + config;
    if (np > 0) command = std::string(MPITRAIN_MPIEXEC) + " -np " + std::to_string(np) + " " + command;
    // The status is renamed into place: seen half-written (created, still empty) it would not parse.
    started_ = std::system(("(" + command + " >" + out_ + " 2>" + err_ + "; echo $? >" + status_ + ".tmp; mv " +
                            status_ + ".tmp " + status_ + ") &")
                               .c_str()) == 0;
  }
  ~BackgroundTrain() {
    [[maybe_unused]] const int status = std::system(("pkill -KILL -f " + ranks_ + " 2>/dev/null").c_str());
  }
  BackgroundTrain(const BackgroundTrain&) = delete;
  BackgroundTrain& operator=(const BackgroundTrain&) = delete;

  bool started() const { return started_; }
  // A pkill/pgrep -f pattern matching its rank processes (not mpirun, not the shell).
  const std::string& ranks() const { return ranks_; }
  bool ended() const { return fs::exists(status_); }
  // Waits up to `seconds` for it to end; its exit status, or -1 where it still runs.
  int wait_for_status(double seconds) const {
    for (int i = 0; i < seconds * 20 && !ended(); ++i) usleep(50000);
    return ended() ? std::stoi(testing::read_bytes(status_)) : -1;
  }
  std::string out() const { return testing::read_bytes(out_); }
  std::string err() const { return testing::read_bytes(err_); }

 private:
  std::string out_, err_, status_, ranks_;
  bool started_ = false;
};

// A corpus, prepared once for the whole suite: ~40 KB of the shipped addresses.
class Train : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    scratch_ = new ScratchDir();
    fs::create_directories(*scratch_ / "corpus");
    int kept = 0;
    for (const auto& item : fs::directory_iterator(std::string(MPITRAIN_SOURCE_DIR) + "/configs/data/sotu")) {
      if (item.path().extension() != ".txt" || kept >= 4) continue;
      const auto text = testing::read_bytes(item.path().string());
      testing::write_bytes(*scratch_ / ("corpus/" + item.path().filename().string()), text.substr(0, 12000));
      ++kept;
    }
    const auto r = run(0, "prepare-data " + (*scratch_ / "corpus") + " " + data() + " --eval_every 4");
    ASSERT_EQ(r.status, 0) << r.err;
  }
  static void TearDownTestSuite() { delete scratch_; }
  static std::string data() { return *scratch_ / "data.h5"; }

  // A tiny Llama trained on `data()`; `training` entries override the defaults below.
  std::string write_config(const std::string& name, const json& training, const json& extra = json::object()) {
    json config = {
        {"model",
         {{"config",
           {{"model_type", "llama"}, {"vocab_size", 259}, {"hidden_size", 32}, {"intermediate_size", 64},
            {"num_hidden_layers", 2}, {"num_attention_heads", 2}, {"num_key_value_heads", 1},
            {"max_position_embeddings", 64}, {"tie_word_embeddings", true}}}}},
        {"data", {{"train_file", data()}, {"seq_len", 32}}},
        {"training",
         {{"output_dir", local_ / name}, {"max_steps", 6}, {"per_device_train_batch_size", 2}, {"learning_rate", 1e-3},
          {"logging_steps", 1}, {"save_strategy", "no"}, {"lr_scheduler_type", "linear"}, {"warmup_steps", 2},
          {"progress_bar", false}}},
        {"parallel", {{"torch_threads", 1}}}};
    for (auto it = training.begin(); it != training.end(); ++it) config["training"][it.key()] = it.value();
    for (auto it = extra.begin(); it != extra.end(); ++it)
      for (auto kv = it->begin(); kv != it->end(); ++kv) config[it.key()][kv.key()] = kv.value();
    const auto path = local_ / (name + ".json");
    testing::write_bytes(path, config.dump(2));
    return path;
  }
  std::string out(const std::string& name) { return local_ / name; }

  static std::vector<json> metrics(const std::string& dir) {
    std::vector<json> rows;
    std::ifstream in(dir + "/metrics.jsonl");
    std::string line;
    while (std::getline(in, line)) rows.push_back(json::parse(line));
    return rows;
  }
  static std::vector<double> losses(const std::string& dir) {
    std::vector<double> out;
    for (const auto& row : metrics(dir))
      if (row.contains("loss")) out.push_back(row["loss"].get<double>());
    return out;
  }
  // The training summary: the metrics row with train_runtime (the final save's report follows it).
  static json summary(const std::string& dir) {
    for (const auto& row : metrics(dir))
      if (row.contains("train_runtime")) return row;
    return json::object();
  }
  static double max_weight_difference(const std::string& a, const std::string& b) {
    checkpoint::SafetensorsFile fa(a + "/model.safetensors"), fb(b + "/model.safetensors");
    double worst = 0;
    for (const auto& e : fa.header().tensors) {
      const auto& f = fb.entry(e.name);
      const auto* x = reinterpret_cast<const float*>(fa.data(e));
      const auto* y = reinterpret_cast<const float*>(fb.data(f));
      for (std::int64_t i = 0; i < e.numel(); ++i) worst = std::max(worst, static_cast<double>(std::fabs(x[i] - y[i])));
    }
    return worst;
  }
  // Exactly one line of ours (mpirun adds its own banner about the non-zero exit status).
  static void expect_one_line_error(const Result& r, const std::string& needle) {
    EXPECT_NE(r.status, 0) << r.out;
    std::istringstream lines(r.err);
    std::string line, ours;
    int count = 0;
    while (std::getline(lines, line))
      if (line.rfind("mpitrain:", 0) == 0) {
        ++count;
        ours = line;
      }
    EXPECT_EQ(count, 1) << r.err;
    EXPECT_EQ(ours.rfind("mpitrain: error: ", 0), 0u) << r.err;
    EXPECT_NE(ours.find(needle), std::string::npos) << r.err;
  }

  static ScratchDir* scratch_;
  ScratchDir local_;
};
inline ScratchDir* Train::scratch_ = nullptr;

}  // namespace mpitrain
