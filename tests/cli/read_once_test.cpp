// Replicated blocks read once: at the start from an HF directory and at resume, the dp replicas share the reading (balanced) and the model is the same as when every rank read everything.
#include <gtest/gtest.h>

#include <regex>
#include <string>
#include <vector>

#include "tests/cli/layout_train_fixture.h"

namespace mpitrain {
namespace {

class ReadOnce : public LayoutTrain {
 protected:
  // Each rank's "read X of the Y MB this rank needs" figures from its log, matching `what`.
  static std::vector<std::pair<double, double>> read_figures(const std::string& dir, int ranks, const std::string& what) {
    std::vector<std::pair<double, double>> figures;
    const std::regex pattern(what + R"(.*read ([0-9.]+) of the ([0-9.]+) MB)");
    for (int r = 0; r < ranks; ++r) {
      const auto log = testing::read_bytes(dir + "/logs/rank-" + std::to_string(r) + ".log");
      std::smatch match;
      if (std::regex_search(log, match, pattern)) figures.emplace_back(std::stod(match[1]), std::stod(match[2]));
    }
    return figures;
  }
};

TEST_F(ReadOnce, DpReplicasShareTheReadingOfTheStartAndOfAResume) {
  // dp 4 from the fixture: together the four ranks read the model once, none all of it; the
  // saved model is the fixture's bytes.
  const json saving = {{"max_steps", 2}, {"save_strategy", "steps"}, {"save_steps", 1}, {"learning_rate", 1e-3},
                       {"lr_scheduler_type", "constant"}};
  auto forced = saving;
  forced["read_once"] = "true";  // auto takes it only across hosts, and these ranks share one
  const auto config = fixture_config("dp4", fixture("llama/single"), false, forced);
  auto r = run(4, "train " + config + " --max_steps=0");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(testing::read_bytes(out("dp4") + "/model.safetensors") ==
              testing::read_bytes(fixture("llama/single/model.safetensors")));
  auto figures = read_figures(out("dp4"), 4, fixture("llama/single") + ": ");
  ASSERT_EQ(figures.size(), 4u) << r.out;
  double read = 0;
  for (const auto& [mine, needed] : figures) {
    EXPECT_LT(mine, needed);
    read += mine;
  }
  EXPECT_NEAR(read, figures[0].second, 0.003);  // the model once (figures rounded to 1 KB)
  // A resume at dp 4: the weights and both moments, each once.
  r = run(4, "train " + config + " --overwrite_output_dir=true");
  ASSERT_EQ(r.status, 0) << r.err;
  r = run(4, "train " + config + " --resume_from_checkpoint=" + out("dp4") + "/checkpoint-1 --max_steps=2 --overwrite_output_dir=true");
  ASSERT_EQ(r.status, 0) << r.err;
  figures = read_figures(out("dp4"), 4, "resumed from ");
  ASSERT_EQ(figures.size(), 4u) << r.out;
  read = 0;
  for (const auto& [mine, needed] : figures) {
    EXPECT_LT(mine, needed);
    read += mine;
  }
  EXPECT_NEAR(read, figures[0].second, 0.003);
  // auto, on one host: every rank reads all it needs (the page cache reads the file once).
  r = run(4, "train " + fixture_config("auto", fixture("llama/single"), false, saving) + " --max_steps=0");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("read_once auto: the dp ranks share one host"), std::string::npos) << r.out;
  for (const auto& [mine, needed] : read_figures(out("auto"), 4, fixture("llama/single") + ": ")) EXPECT_EQ(mine, needed);
  expect_one_line_error(run(1, "train " + config + " --read_once=yes"), "read_once must be auto, true or false, not 'yes'");
  // And it trains as the run that never stopped.
  const auto straight = fixture_config("dp4_straight", fixture("llama/single"), false, saving);
  r = run(4, "train " + straight);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(testing::read_bytes(out("dp4") + "/model.safetensors") ==
              testing::read_bytes(out("dp4_straight") + "/model.safetensors"));
}

TEST_F(ReadOnce, UnderTensorParallelismEachDpPairReadsItsSlicesOnce) {
  // dp 2 x tp 2: the two ranks of a tp slice read it once between them; the model is the
  // fixture's, bit for bit.
  const json training = {{"max_steps", 0}, {"read_once", "true"}};
  const auto config = write_config("tp2", training,
                                   {{"model", {{"model_name_or_path", fixture("llama/single")}}},
                                    {"data", {{"train_file", *scratch_ / "bytes.h5"}, {"seq_len", 24}}},
                                    {"parallel", {{"tensor_parallel_size", 2}}}});
  const auto r = run(4, "train " + config);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(testing::read_bytes(out("tp2") + "/model.safetensors") ==
              testing::read_bytes(fixture("llama/single/model.safetensors")));
  const auto figures = read_figures(out("tp2"), 4, fixture("llama/single") + ": ");
  ASSERT_EQ(figures.size(), 4u) << r.out;
  // Ranks 0 and 2 hold tp slice 0, ranks 1 and 3 slice 1 (rank = dp index x 2 + tp index).
  for (int slice = 0; slice < 2; ++slice) {
    const auto& [a, needed] = figures[static_cast<std::size_t>(slice)];
    const auto& [b, also_needed] = figures[static_cast<std::size_t>(slice + 2)];
    EXPECT_EQ(needed, also_needed);
    EXPECT_LT(a, needed);
    EXPECT_LT(b, needed);
    EXPECT_NEAR(a + b, needed, 0.002) << "slice " << slice;
  }
}

}  // namespace
}  // namespace mpitrain
