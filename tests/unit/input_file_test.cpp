// Files the program reads: a FIFO, a device or a directory in a file's place is one error naming it (never a blocked open), and JSON nested past the bound is refused before it can overflow the stack.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <string>

#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/input_file.h"
#include "runtime/checkpoint/json_file.h"
#include "runtime/checkpoint/safetensors_file.h"
#include "tests/unit/test_files.h"

namespace mpitrain::checkpoint {
namespace {

// What `read` throws, and that it threw at once (a blocked open would never return).
template <class Read>
std::string error_of(Read read) {
  const auto start = std::chrono::steady_clock::now();
  try {
    read();
  } catch (const CheckpointError& e) {
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 5.0);
    return e.what();
  }
  return "";
}

std::string nested(std::size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }

TEST(InputFile, AFifoOrADirectoryIsNamedNotOpenedForReading) {
  testing::ScratchDir dir;
  const auto fifo = dir / "model.safetensors";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0);
  EXPECT_NE(error_of([&] { read_regular_file(fifo); }).find("model.safetensors: is a FIFO"), std::string::npos);
  EXPECT_NE(error_of([&] { SafetensorsFile file(fifo); }).find("is a FIFO"), std::string::npos);
  EXPECT_NE(error_of([&] { read_json_file(fifo); }).find("is a FIFO"), std::string::npos);
  EXPECT_NE(error_of([&] { require_regular_file(fifo); }).find("is a FIFO"), std::string::npos);
  EXPECT_NE(error_of([&] { read_regular_file(dir.path()); }).find("is a directory"), std::string::npos);
  EXPECT_NE(error_of([&] { read_regular_file(dir / "missing.json"); }).find("cannot open"), std::string::npos);
  testing::write_bytes(dir / "config.json", "{\"a\": 1}");
  EXPECT_EQ(read_regular_file(dir / "config.json"), "{\"a\": 1}");
}

TEST(InputFile, JsonNestedPastTheBoundIsRefusedByName) {
  // 100,000 levels overflowed nlohmann's recursive destructor (a segfault); now one line.
  const auto deep = error_of([&] { parse_json(nested(100000), "config.json"); });
  EXPECT_NE(deep.find("config.json: JSON nested deeper than 512 levels"), std::string::npos) << deep;
  EXPECT_NE(error_of([&] { parse_json("{\"a\":" + nested(600) + "}", "x"); }).find("nested deeper"), std::string::npos);
  // At the bound it parses; brackets inside strings do not nest.
  EXPECT_NO_THROW(parse_json(nested(kMaxJsonDepth), "x"));
  EXPECT_NO_THROW(parse_json("{\"k\": \"" + std::string(1000, '[') + "\\\"\"}", "x"));
  EXPECT_NE(error_of([&] { parse_json("{\"a\": ", "x.json"); }).find("x.json: invalid JSON"), std::string::npos);
  testing::ScratchDir dir;
  testing::write_bytes(dir / "config.json", nested(100000));
  EXPECT_NE(error_of([&] { read_json_file(dir / "config.json"); }).find("nested deeper"), std::string::npos);
}

}  // namespace
}  // namespace mpitrain::checkpoint
