// A job killed (SIGKILL) at each moment of a checkpoint save, and a disk that fills up: the previous checkpoint stays whole and resumable.
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <tuple>

#include "runtime/checkpoint/checkpoint_dir.h"
#include "tests/cli/train_fixture.h"

namespace mpitrain {
namespace {

class Crash : public Train {
 protected:
  // Saves at steps 2 and 4 of 4 (the first run stops at 2).
  json saving(std::int64_t max_steps) {
    return {{"max_steps", max_steps}, {"save_strategy", "steps"}, {"save_steps", 2}, {"lr_scheduler_type", "constant"}};
  }
};

TEST_F(Crash, KilledAtAnyMomentOfASaveLosesNothing) {
  auto r = run(2, "train " + write_config("uncut", saving(4)));
  ASSERT_EQ(r.status, 0) << r.err;
  // (crash point, rank, whether checkpoint-4 may still be complete): before any byte,
  // mid-data, before the renames, between weights and optimizer, before the commit, after the
  // rename but before the marker; rank 0 and not. Rank 1 dying just before the commit has
  // already written and synced everything, and rank 0 commits it: a whole checkpoint.
  const std::vector<std::tuple<std::string, int, bool>> moments = {
      {"save.files_created", 0, false},       {"save.writing", 1, false},
      {"save.writing", 0, false},             {"save.before_rename", 1, false},
      {"checkpoint.weights_saved", 0, false}, {"checkpoint.weights_saved", 1, false},
      {"checkpoint.before_commit", 0, false}, {"checkpoint.before_commit", 1, true},
      {"checkpoint.renamed", 0, false}};
  for (const auto& [point, rank, may_complete] : moments) {
    const auto name = point + "_" + std::to_string(rank);
    r = run(2, "train " + write_config(name, saving(2)));
    ASSERT_EQ(r.status, 0) << r.err;
    const auto before = testing::read_bytes(out(name) + "/checkpoint-2/model.safetensors");
    // The run to step 4 is killed while saving checkpoint-4.
    r = run(2, "train " + write_config(name, saving(4)) + " --resume_from_checkpoint=true",
            "MPITRAIN_CRASH_AT=" + point + "@" + std::to_string(rank));
    EXPECT_NE(r.status, 0) << name;
    const auto complete = checkpoint::complete_checkpoints(out(name));
    ASSERT_FALSE(complete.empty()) << name;
    EXPECT_EQ(complete[0].step, 2) << name;
    EXPECT_EQ(complete.size(), may_complete ? complete.size() : 1u) << name << ": checkpoint-4 counted as complete";
    EXPECT_TRUE(testing::read_bytes(out(name) + "/checkpoint-2/model.safetensors") == before) << name;
    // The requeued job resumes from the latest complete checkpoint and ends exactly where the
    // uncut run did.
    r = run(2, "train " + write_config(name, saving(4)) + " --resume_from_checkpoint=true");
    ASSERT_EQ(r.status, 0) << name << "\n" << r.err;
    EXPECT_NE(r.out.find("resumed from " + complete.back().path), std::string::npos) << name;
    EXPECT_TRUE(testing::read_bytes(out(name) + "/model.safetensors") ==
                testing::read_bytes(out("uncut") + "/model.safetensors")) << name;
    EXPECT_TRUE(checkpoint::is_complete_checkpoint(out(name) + "/checkpoint-4")) << name;
  }
}

TEST_F(Crash, ACorruptedOrTruncatedCheckpointFileIsRefusedByName) {
  auto r = run(2, "train " + write_config("bitrot", saving(2)));
  ASSERT_EQ(r.status, 0) << r.err;
  const auto marker = json::parse(testing::read_bytes(out("bitrot") + "/checkpoint-2/" + checkpoint::kCompleteMarker));
  ASSERT_TRUE(marker["files"].contains("model.safetensors"));
  ASSERT_TRUE(marker["files"].contains("optimizer/model.safetensors"));
  // One flipped byte in the middle of the weights: same size, loads as valid safetensors.
  const auto weights = out("bitrot") + "/checkpoint-2/model.safetensors";
  auto bytes = testing::read_bytes(weights);
  bytes[bytes.size() / 2] ^= 0x01;
  testing::write_bytes(weights, bytes);
  const auto resume = " --resume_from_checkpoint=" + out("bitrot") + "/checkpoint-2 --max_steps=4";
  expect_one_line_error(run(2, "train " + write_config("bitrot_resumed", saving(4)) + resume),
                        weights + ": checksum mismatch");
  // The same flip with the weights' entry deleted from the marker: refused, not read unverified.
  const auto marker_path = out("bitrot") + "/checkpoint-2/" + checkpoint::kCompleteMarker;
  const auto marker_text = testing::read_bytes(marker_path);
  auto edited = marker;
  edited["files"].erase("model.safetensors");
  testing::write_bytes(marker_path, edited.dump(2) + "\n");
  expect_one_line_error(run(2, "train " + write_config("bitrot_resumed", saving(4)) + resume),
                        weights + ": is not listed in mpitrain_complete.json");
  testing::write_bytes(marker_path, marker_text);
  // A truncated optimizer shard.
  bytes[bytes.size() / 2] ^= 0x01;
  testing::write_bytes(weights, bytes);
  const auto moments = out("bitrot") + "/checkpoint-2/optimizer/model.safetensors";
  const auto full = testing::read_bytes(moments);
  testing::write_bytes(moments, full.substr(0, full.size() - 8));
  expect_one_line_error(run(2, "train " + write_config("bitrot_resumed", saving(4)) + resume),
                        moments + ": has " + std::to_string(full.size() - 8) + " bytes");
  // Repaired, it resumes.
  testing::write_bytes(moments, full);
  r = run(2, "train " + write_config("bitrot_resumed", saving(4)) + resume);
  EXPECT_EQ(r.status, 0) << r.err;
}

TEST_F(Crash, FullDiskIsAClearErrorAndKeepsThePreviousCheckpoint) {
  if (::geteuid() != 0) GTEST_SKIP() << "mounting a small tmpfs needs root (CI runs as root)";
  // Measure one checkpoint, then give the run room for one and a half.
  auto r = run(2, "train " + write_config("measure", saving(2)));
  ASSERT_EQ(r.status, 0) << r.err;
  std::uintmax_t bytes = 0;
  for (const auto& item : fs::recursive_directory_iterator(out("measure") + "/checkpoint-2"))
    if (item.is_regular_file()) bytes += item.file_size();
  // Through pwrite and through MPI-IO's collective write alike.
  for (const std::string io : {"posix", "mpiio"}) {
    SCOPED_TRACE(io);
    const auto disk = local_ / ("disk_" + io);
    fs::create_directories(disk);
    const auto size = "size=" + std::to_string((bytes * 3 / 2 / 4096 + 16) * 4096);
    ASSERT_EQ(::mount("tmpfs", disk.c_str(), "tmpfs", 0, size.c_str()), 0) << std::strerror(errno);
    struct Unmount {
      std::string path;
      ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
    } unmount{disk};
    json config = saving(6);
    config["save_io"] = io;
    config["output_dir"] = disk + "/run";
    r = run(2, "train " + write_config("full_" + io, config));
    expect_one_line_error(r, "No space left on device");
    const auto complete = checkpoint::complete_checkpoints(disk + "/run");
    ASSERT_EQ(complete.size(), 1u);
    EXPECT_EQ(complete[0].step, 2);
    // Nothing half-written under a final name: the failed save left only its staging directory.
    EXPECT_FALSE(fs::exists(disk + "/run/checkpoint-4"));
    // The saved checkpoint is whole: training resumes from it (on a disk with room).
    json resumed = saving(4);
    resumed["resume_from_checkpoint"] = complete[0].path;
    r = run(2, "train " + write_config("after_full_" + io, resumed));
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("resumed from " + complete[0].path), std::string::npos);
  }
}

}  // namespace
}  // namespace mpitrain
