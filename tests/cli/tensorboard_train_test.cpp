// report_to=tensorboard: the event file holds every scalar of metrics.jsonl under transformers' tags, a killed writer's cut record hides nothing before it, and a resume continues the run's directory without showing a step twice.
#include <gtest/gtest.h>

#include <filesystem>

#include "src/tensorboard/event_file.h"
#include "tests/cli/train_fixture.h"

namespace mpitrain {
namespace {

// The event files of a logging directory, oldest first (their names start with the time).
std::vector<std::string> event_files(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& item : fs::recursive_directory_iterator(dir))
    if (item.path().filename().string().rfind("events.out.tfevents.", 0) == 0) files.push_back(item.path().string());
  std::sort(files.begin(), files.end());
  return files;
}

// transformers' TensorBoardCallback tag of a metrics.jsonl key.
std::string tag_of(const std::string& key) {
  if (key.rfind("eval_", 0) == 0) return "eval/" + key.substr(5);
  return "train/" + key;
}

TEST(TensorBoardRecords, TheChecksumIsTfRecordsMaskedCrc32c) {
  // CRC-32C's check value: "123456789" -> 0xE3069283, then TFRecord's mask
  // ((crc >> 15) | (crc << 17)) + 0xa282ead8.
  EXPECT_EQ(tensorboard::masked_crc32c("123456789", 9), 0xc78ab0e5u);
}

TEST_F(Train, EveryMetricsLineIsInTheTensorBoardFileUnderTransformersTags) {
  const auto r = run(2, "train " + write_config("board", {{"max_steps", 6}, {"logging_steps", 2}, {"report_to", "tensorboard"},
                                                          {"eval_strategy", "steps"}, {"eval_steps", 3},
                                                          {"include_num_input_tokens_seen", "all"}}));
  ASSERT_EQ(r.status, 0) << r.err;
  const auto files = event_files(out("board") + "/runs");
  ASSERT_EQ(files.size(), 1u);  // rank 0's alone
  EXPECT_NE(r.out.find("tensorboard: " + files[0]), std::string::npos) << r.out;
  const auto events = tensorboard::read_event_file(files[0]);
  EXPECT_EQ(events.file_version, "brain.Event:2");
  EXPECT_FALSE(events.truncated);
  std::size_t compared = 0;
  for (const auto& row : metrics(out("board"))) {
    for (const auto& [key, value] : row.items()) {
      if (key == "step" || !value.is_number()) continue;
      const auto tag = tag_of(key);
      const auto step = row["step"].get<std::int64_t>();
      const auto found = std::find_if(events.scalars.begin(), events.scalars.end(), [&](const auto& e) {
        return e.tag == tag && e.step == step;
      });
      ASSERT_NE(found, events.scalars.end()) << tag << " at step " << step;
      // TensorBoard keeps float32.
      EXPECT_NEAR(found->value, value.get<double>(), 1e-6 * std::max(1.0, std::fabs(value.get<double>()))) << tag;
      ++compared;
    }
  }
  EXPECT_GT(compared, 20u);
  for (const char* tag : {"train/loss", "train/learning_rate", "train/grad_norm", "train/epoch", "eval/loss",
                          "eval/perplexity", "train/tokens_per_second", "train/num_input_tokens_seen"})
    EXPECT_TRUE(std::any_of(events.scalars.begin(), events.scalars.end(), [&](const auto& e) { return e.tag == tag; }))
        << tag;
  // A writer killed inside its last record: every record before it still reads.
  const auto bytes = testing::read_bytes(files[0]);
  testing::write_bytes(local_ / "cut.tfevents", bytes.substr(0, bytes.size() - 7));
  const auto cut = tensorboard::read_event_file(local_ / "cut.tfevents");
  EXPECT_TRUE(cut.truncated);
  ASSERT_LT(cut.scalars.size(), events.scalars.size());
  ASSERT_GT(cut.scalars.size(), 0u);
  for (std::size_t i = 0; i < cut.scalars.size(); ++i) {  // the same records, in order
    EXPECT_EQ(cut.scalars[i].tag, events.scalars[i].tag);
    EXPECT_EQ(cut.scalars[i].step, events.scalars[i].step);
  }
  // A flipped byte is a checksum error naming the file.
  auto flipped = bytes;
  flipped[flipped.size() / 2] = static_cast<char>(flipped[flipped.size() / 2] ^ 0x5a);
  testing::write_bytes(local_ / "flipped.tfevents", flipped);
  EXPECT_THROW(tensorboard::read_event_file(local_ / "flipped.tfevents"), std::runtime_error);
}

TEST_F(Train, AResumeContinuesTheRunsTensorBoardDirectoryFromItsStep) {
  // Saved at step 2 of a run that went on to step 4, resumed from checkpoint-2: the same
  // directory, a second file opening with SessionLog START at step 2, so TensorBoard drops the
  // first file's steps 3 and 4 and shows the resumed ones once.
  const json training = {{"max_steps", 4}, {"logging_steps", 1}, {"report_to", "tensorboard"}, {"save_strategy", "steps"},
                         {"save_steps", 2}};
  auto r = run(1, "train " + write_config("resumed", training));
  ASSERT_EQ(r.status, 0) << r.err;
  auto resumed = training;
  resumed["resume_from_checkpoint"] = out("resumed") + "/checkpoint-2";
  resumed["max_steps"] = 5;
  resumed["overwrite_output_dir"] = true;  // checkpoint-4 goes: the run continues from step 2
  r = run(1, "train " + write_config("resumed", resumed));
  ASSERT_EQ(r.status, 0) << r.err;
  const auto files = event_files(out("resumed") + "/runs");
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(fs::path(files[0]).parent_path(), fs::path(files[1]).parent_path());
  const auto second = tensorboard::read_event_file(files[1]);
  EXPECT_EQ(second.session_starts, std::vector<std::int64_t>{2});
  std::vector<std::int64_t> steps;
  for (const auto& e : second.scalars)
    if (e.tag == "train/loss") steps.push_back(e.step);
  EXPECT_EQ(steps, (std::vector<std::int64_t>{3, 4, 5}));
  EXPECT_NE(r.out.find("a new file from step 2"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace mpitrain
