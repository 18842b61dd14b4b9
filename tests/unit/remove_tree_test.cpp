// remove_tree: deletes trees as std::filesystem::remove_all would (which pip's LibTorch breaks), links not followed.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "runtime/checkpoint/remove_tree.h"
#include "tests/unit/test_files.h"

namespace mpitrain::checkpoint {
namespace {

namespace fs = std::filesystem;

void write(const fs::path& path, const std::string& text) { std::ofstream(path) << text; }

TEST(RemoveTree, DeletesATreeAndCountsItsEntriesButNotWhatLinksPointTo) {
  testing::ScratchDir scratch;
  const fs::path root = scratch.path();
  const auto outside = root / "outside";
  fs::create_directories(outside);
  write(outside / "kept.txt", "kept");
  const auto tree = root / "checkpoint-5";
  fs::create_directories(tree / "optimizer" / "deeper");
  write(tree / "model.safetensors", "weights");
  write(tree / "optimizer" / "state.safetensors", "moments");
  write(tree / "optimizer" / "deeper" / "x", "x");
  fs::create_directory_symlink(outside, tree / "link-to-outside");
  fs::create_symlink(root / "nowhere", tree / "dangling");
  // tree, 2 directories, 3 files, 2 links
  EXPECT_EQ(remove_tree(tree), 8u);
  EXPECT_FALSE(fs::exists(fs::symlink_status(tree)));
  EXPECT_TRUE(fs::exists(outside / "kept.txt"));
}

TEST(RemoveTree, AFileALinkAndNothing) {
  testing::ScratchDir scratch;
  const fs::path root = scratch.path();
  write(root / "file", "data");
  EXPECT_EQ(remove_tree(root / "file"), 1u);
  EXPECT_FALSE(fs::exists(root / "file"));
  fs::create_directories(root / "target");
  fs::create_directory_symlink(root / "target", root / "link");
  write(root / "target" / "inside", "kept");
  EXPECT_EQ(remove_tree(root / "link"), 1u);  // the link goes, its target stays
  EXPECT_TRUE(fs::exists(root / "target" / "inside"));
  fs::create_directory_symlink(root / "target", root / "link");
  EXPECT_EQ(remove_tree(root / "link/"), 1u);  // spelled as a directory, still the link
  EXPECT_TRUE(fs::exists(root / "target" / "inside"));
  EXPECT_FALSE(fs::exists(fs::symlink_status(root / "link")));
  EXPECT_EQ(remove_tree(root / "missing"), 0u);
}

TEST(RemoveTree, APathItCannotReachIsAnErrorNamingIt) {
  testing::ScratchDir scratch;
  const fs::path root = scratch.path();
  write(root / "file", "data");
  try {
    remove_tree(root / "file" / "below");  // a file is no directory: ENOTDIR
    FAIL() << "no error";
  } catch (const fs::filesystem_error& e) {
    EXPECT_NE(std::string(e.what()).find("file/below"), std::string::npos) << e.what();
    EXPECT_EQ(e.code(), std::errc::not_a_directory);
  }
  EXPECT_TRUE(fs::exists(root / "file"));
}

}  // namespace
}  // namespace mpitrain::checkpoint
