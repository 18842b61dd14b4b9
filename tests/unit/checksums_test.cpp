// XXH64 against the algorithm's published values, streaming in any chunks, and checkpoint verification catching each kind of damage.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/checksums.h"
#include "runtime/checkpoint/xxhash64.h"
#include "tests/unit/test_files.h"

namespace mpitrain::checkpoint {
namespace {

TEST(Xxh64, MatchesThePublishedValues) {
  EXPECT_EQ(xxh64("", 0), 0xEF46DB3751D8E999ull);
  EXPECT_EQ(xxh64("abc", 3), 0x44BC2CF5AD770999ull);
}

TEST(Xxh64, StreamingInAnyChunksEqualsOneCall) {
  std::string data;
  for (int i = 0; i < 1000; ++i) data += static_cast<char>(i * 37 + 11);
  const auto whole = xxh64(data.data(), data.size());
  for (std::size_t chunk : {1u, 3u, 7u, 31u, 32u, 33u, 100u, 999u}) {
    Xxh64 state;
    for (std::size_t at = 0; at < data.size(); at += chunk) state.update(data.data() + at, std::min(chunk, data.size() - at));
    EXPECT_EQ(state.digest(), whole) << chunk;
  }
  EXPECT_NE(xxh64(data.data(), data.size() - 1), whole);
}

TEST(Checksums, VerificationNamesTheDamagedFile) {
  testing::ScratchDir dir;
  std::filesystem::create_directories(dir / "optimizer");
  testing::write_bytes(dir / "model.safetensors", std::string(5000, 'x'));
  testing::write_bytes(dir / "optimizer/model.safetensors", std::string(300, 'y'));
  std::vector<FileChecksum> sums;
  for (const auto& f : checkpoint_files(dir.path())) sums.push_back(checksum_file(dir.path(), f));
  ASSERT_EQ(sums.size(), 2u);
  CompletionMarker marker;
  marker.files = checksums_to_json(sums);
  EXPECT_NO_THROW(verify_checksums(dir.path(), marker));

  auto expect_error = [&](const std::string& needle) {
    try {
      verify_checksums(dir.path(), marker);
      ADD_FAILURE() << "no error, expected " << needle;
    } catch (const CheckpointError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  std::string flipped(5000, 'x');
  flipped[2500] = 'z';  // one byte, same size
  testing::write_bytes(dir / "model.safetensors", flipped);
  expect_error("model.safetensors: checksum mismatch");
  testing::write_bytes(dir / "model.safetensors", std::string(4999, 'x'));
  expect_error("has 4999 bytes but 5000 were saved");
  std::filesystem::remove(dir / "optimizer/model.safetensors");
  testing::write_bytes(dir / "model.safetensors", std::string(5000, 'x'));
  expect_error("optimizer/model.safetensors: is missing");
  // Two verifiers split the files between them; together they check everything.
  EXPECT_NO_THROW(verify_checksums(dir.path(), marker, 0, 2));
  EXPECT_THROW(verify_checksums(dir.path(), marker, 1, 2), CheckpointError);
}

TEST(Checksums, AFileTheMarkerDoesNotListIsRefusedNotReadUnverified) {
  // Deleting a file's entry from the marker and flipping a byte in it resumed the flipped
  // weights silently: the marker verified only what it listed.
  testing::ScratchDir dir;
  std::filesystem::create_directories(dir / "optimizer");
  testing::write_bytes(dir / "model.safetensors", std::string(500, 'x'));
  testing::write_bytes(dir / "optimizer/model.safetensors", std::string(300, 'y'));
  testing::write_bytes(dir / "trainer_state.json", "{}");
  testing::write_bytes(dir / "notes.txt", "a file no reader reads");
  std::vector<FileChecksum> sums;
  for (const auto& f : {"model.safetensors", "optimizer/model.safetensors", "trainer_state.json"})
    sums.push_back(checksum_file(dir.path(), f));
  CompletionMarker marker;
  marker.files = checksums_to_json(sums);
  EXPECT_NO_THROW(verify_checksums(dir.path(), marker));
  for (const auto* hidden : {"model.safetensors", "optimizer/model.safetensors", "trainer_state.json"}) {
    auto edited = marker;
    edited.files.erase(hidden);
    try {
      verify_checksums(dir.path(), edited);
      ADD_FAILURE() << "read " << hidden << " unverified";
    } catch (const CheckpointError& e) {
      EXPECT_NE(std::string(e.what()).find(std::string(hidden) + ": is not listed in mpitrain_complete.json"),
                std::string::npos) << e.what();
    }
  }
  // What a model reader reads (config, weights, indexes) is held to the same rule, and only that.
  testing::write_bytes(dir / "config.json", "{}");
  testing::write_bytes(dir / "mpitrain_complete.json", marker.to_json_text());
  EXPECT_THROW(verify_if_checkpoint(dir.path()), CheckpointError);  // config.json unlisted
  sums.push_back(checksum_file(dir.path(), "config.json"));
  marker.files = checksums_to_json(sums);
  marker.files.erase("trainer_state.json");  // not a model reader's file
  testing::write_bytes(dir / "mpitrain_complete.json", marker.to_json_text());
  EXPECT_TRUE(verify_if_checkpoint(dir.path()));
}

TEST(Checksums, AMarkerListingNoFilesIsRefusedNotTakenAsVerified) {
  // Before, a marker without "files" verified nothing: a flipped byte then resumed silently.
  testing::ScratchDir dir;
  testing::write_bytes(dir / "model.safetensors", std::string(100, 'x'));
  // A marker without "files", and one with an empty list, parse alike.
  for (const auto* text : {"{}", R"({"files": {}})"}) {
    const auto marker = CompletionMarker::parse(text, "mpitrain_complete.json");
    try {
      verify_checksums(dir.path(), marker);
      ADD_FAILURE() << "verified " << text;
    } catch (const CheckpointError& e) {
      EXPECT_NE(std::string(e.what()).find("mpitrain_complete.json: lists no files to verify"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("verify_checksums=false"), std::string::npos) << e.what();
    }
  }
}

TEST(Checksums, AMalformedMarkerIsNamedWithItsField) {
  testing::ScratchDir dir;
  const auto expect_error = [&](const std::string& text, const std::string& needle) {
    testing::write_bytes(dir / "mpitrain_complete.json", text);
    try {
      read_completion_marker(dir.path());
      ADD_FAILURE() << "accepted " << text;
    } catch (const CheckpointError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("mpitrain_complete.json"), std::string::npos) << what;
      EXPECT_NE(what.find(needle), std::string::npos) << what;
      // The field named, not a JSON library's type error (a parse error keeps its position text).
      if (needle != "is not valid JSON") {
        EXPECT_EQ(what.find("[json.exception"), std::string::npos) << what;
      }
    }
  };
  expect_error("[]", "must be a JSON object, got array");
  expect_error("5", "must be a JSON object, got number");
  expect_error("{\"step\": 3, \"dp\": \"x\"}", "\"dp\" must be a positive integer, got \"x\"");
  expect_error("{\"tp\": 0}", "\"tp\" must be a positive integer, got 0");
  expect_error("{\"files\": [1]}", "\"files\" must be an object");
  expect_error("{\"files\": {\"model.safetensors\": {\"size\": \"big\", \"xxh64\": \"00\"}}}",
               "file 'model.safetensors' must have an integer \"size\"");
  expect_error("{\"step\": ", "is not valid JSON");
  testing::write_bytes(dir / "mpitrain_complete.json",
                       R"({"step": 4, "world_size": 2, "dp": 2, "tp": 1, "files": {"a": {"size": 1, "xxh64": "ab"}}})");
  EXPECT_EQ(read_completion_marker(dir.path()).dp, 2);
}

}  // namespace
}  // namespace mpitrain::checkpoint
