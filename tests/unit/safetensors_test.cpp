// The safetensors reader and writer: exact format, every dtype, slices, and each malformed input.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <numeric>

#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/safetensors_file.h"
#include "runtime/checkpoint/safetensors_writer.h"
#include "tests/unit/test_files.h"

namespace mpitrain::checkpoint {
namespace {

using testing::ScratchDir;
using testing::safetensors_bytes;
using testing::write_bytes;

// Expects opening `bytes` as a file to fail with a message that names the file and holds `needle`.
void expect_rejected(const std::string& bytes, const std::string& needle) {
  ScratchDir dir;
  const auto path = dir / "bad.safetensors";
  write_bytes(path, bytes);
  try {
    SafetensorsFile file(path);
    FAIL() << "accepted a file that should fail with '" << needle << "'";
  } catch (const CheckpointError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(path), std::string::npos) << message;
    EXPECT_NE(message.find(needle), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << "error must be one line: " << message;
  }
}

TEST(Safetensors, WritesExactlyTheReferenceFormat) {
  ScratchDir dir;
  std::vector<float> a = {1, 2, 3, 4, 5, 6};
  std::vector<std::uint16_t> b = {7, 8};
  write_safetensors(dir / "x.safetensors", {{{"b.weight", DType::BF16, {2}}, b.data()},
                                            {{"a.weight", DType::F32, {2, 3}}, a.data()}});
  const auto bytes = testing::read_bytes(dir / "x.safetensors");
  std::uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u) << "header must be padded to a multiple of 8";
  const std::string header = bytes.substr(8, n);
  // Metadata first, then tensors in the reference order (dtype descending: F32 before BF16), compact JSON.
  const std::string expected =
      R"({"__metadata__":{"format":"pt"},"a.weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
      R"("b.weight":{"dtype":"BF16","shape":[2],"data_offsets":[24,28]}})";
  EXPECT_EQ(header.substr(0, expected.size()), expected);
  EXPECT_EQ(header.find_first_not_of(' ', expected.size()), std::string::npos) << "padding must be spaces";
  EXPECT_EQ(bytes.size(), 8 + n + 28);
  EXPECT_EQ(std::memcmp(bytes.data() + 8 + n, a.data(), 24), 0);
  EXPECT_FALSE(std::filesystem::exists(dir / "x.safetensors.tmp." + std::to_string(::getpid())));
}

TEST(Safetensors, RoundTripsEveryDtype) {
  ScratchDir dir;
  const std::vector<DType> dtypes = {DType::F64, DType::F32, DType::F16, DType::BF16, DType::I64,
                                     DType::I32, DType::I16, DType::I8,  DType::U8,   DType::BOOL};
  std::vector<std::vector<std::uint8_t>> data;
  std::vector<TensorBytes> tensors;
  for (std::size_t i = 0; i < dtypes.size(); ++i) {
    data.emplace_back(dtype_size(dtypes[i]) * 6);
    for (std::size_t j = 0; j < data.back().size(); ++j) data.back()[j] = static_cast<std::uint8_t>(i * 31 + j);
    if (dtypes[i] == DType::BOOL)
      for (auto& x : data.back()) x &= 1;
    tensors.push_back({{"t" + std::string(dtype_name(dtypes[i])), dtypes[i], {2, 3}}, data.back().data()});
  }
  write_safetensors(dir / "all.safetensors", tensors, {{"format", "pt"}, {"note", "x"}});
  SafetensorsFile file(dir / "all.safetensors");
  EXPECT_EQ(file.header().metadata.at("note"), "x");
  for (std::size_t i = 0; i < dtypes.size(); ++i) {
    const auto& e = file.entry(tensors[i].spec.name);
    EXPECT_EQ(e.dtype, dtypes[i]);
    EXPECT_EQ(e.shape, (std::vector<std::int64_t>{2, 3}));
    std::vector<std::uint8_t> back(e.nbytes());
    file.read_into(e, back.data());
    EXPECT_EQ(back, data[i]) << dtype_name(dtypes[i]);
  }
}

TEST(Safetensors, ReadsRectangularSlicesWithoutTheRest) {
  ScratchDir dir;
  std::vector<float> values(4 * 5 * 6);
  std::iota(values.begin(), values.end(), 0.f);
  write_safetensors(dir / "s.safetensors", {{{"t", DType::F32, {4, 5, 6}}, values.data()}});
  SafetensorsFile file(dir / "s.safetensors");
  const auto& e = file.entry("t");
  auto check = [&](std::vector<std::int64_t> off, std::vector<std::int64_t> size) {
    std::vector<float> out(static_cast<std::size_t>(size[0] * size[1] * size[2]));
    file.read_slice(e, off, size, out.data());
    std::size_t k = 0;
    for (std::int64_t i = 0; i < size[0]; ++i)
      for (std::int64_t j = 0; j < size[1]; ++j)
        for (std::int64_t l = 0; l < size[2]; ++l)
          ASSERT_EQ(out[k++], values[((off[0] + i) * 5 + off[1] + j) * 6 + off[2] + l]);
  };
  check({1, 0, 0}, {2, 5, 6});  // dim-0 block (column-parallel / sharded)
  check({0, 0, 2}, {4, 5, 3});  // last-dim block (row-parallel)
  check({1, 2, 1}, {3, 2, 4});  // arbitrary box
  check({3, 4, 5}, {1, 1, 1});
  std::vector<float> out(1);
  EXPECT_THROW(file.read_slice(e, {3, 4, 5}, {2, 1, 1}, out.data()), CheckpointError);
}

TEST(Safetensors, LargeSlicesReadByPreadEqualTheMappedBytes) {
  // Slices of 1 MB and more are read with pread, run by run; smaller ones from the mapping.
  ScratchDir dir;
  const std::int64_t rows = 512, columns = 1024;  // 2 MB of float32
  std::vector<float> values(static_cast<std::size_t>(rows * columns));
  std::iota(values.begin(), values.end(), 0.f);
  write_safetensors(dir / "big.safetensors", {{{"small", DType::F32, {3}}, values.data()},
                                              {{"w", DType::F32, {rows, columns}}, values.data()}});
  SafetensorsFile file(dir / "big.safetensors");
  const auto& e = file.entry("w");
  for (const auto& [offsets, sizes] : std::vector<std::pair<std::vector<std::int64_t>, std::vector<std::int64_t>>>{
           {{0, 256}, {rows, 512}},       // 1 MB in 512 strided runs (a dim-1 block)
           {{128, 0}, {384, columns}},    // 1.5 MB in one run (a dim-0 block)
           {{1, 1}, {300, 900}}}) {       // a box, just over 1 MB
    std::vector<float> out(static_cast<std::size_t>(sizes[0] * sizes[1]));
    file.read_slice(e, offsets, sizes, out.data());
    std::size_t k = 0;
    for (std::int64_t i = 0; i < sizes[0]; ++i)
      for (std::int64_t j = 0; j < sizes[1]; ++j)
        ASSERT_EQ(out[k++], values[static_cast<std::size_t>((offsets[0] + i) * columns + offsets[1] + j)]);
  }
}

TEST(Safetensors, EmptyFileOfNoTensorsIsValid) {
  ScratchDir dir;
  write_safetensors(dir / "e.safetensors", {});
  SafetensorsFile file(dir / "e.safetensors");
  EXPECT_TRUE(file.header().tensors.empty());
}

const std::string kGoodEntry = R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";

TEST(SafetensorsRejects, TruncatedFile) {
  expect_rejected("abc", "too short");
  // The header promises 8 bytes of data, the file holds 4.
  expect_rejected(safetensors_bytes("{" + kGoodEntry + "}", std::string(4, '\0')), "truncated");
}

TEST(SafetensorsRejects, HeaderLengthLargerThanFile) {
  expect_rejected(safetensors_bytes("{}", "", 4096), "exceeds the file size");
}

TEST(SafetensorsRejects, HeaderOver100MB) {
  expect_rejected(safetensors_bytes("{}", "", 100'000'001), "100 MB");
}

TEST(SafetensorsRejects, InvalidJson) {
  expect_rejected(safetensors_bytes("{\"w\": [1,", ""), "not valid JSON");
  expect_rejected(safetensors_bytes("[1, 2]  ", ""), "does not start with '{'");
}

TEST(SafetensorsRejects, OverlappingOffsets) {
  expect_rejected(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                    R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                    std::string(12, '\0')),
                  "overlap");
}

TEST(SafetensorsRejects, GapBetweenTensors) {
  expect_rejected(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                    R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                                    std::string(12, '\0')),
                  "gap of 4 bytes");
}

TEST(SafetensorsRejects, OffsetsOutOfRange) {
  expect_rejected(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", std::string(8, '\0')),
                  "run past the end");
  expect_rejected(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", std::string(8, '\0')),
                  "end before they begin");
}

TEST(SafetensorsRejects, TrailingBytesNotDescribed) {
  expect_rejected(safetensors_bytes("{" + kGoodEntry + "}", std::string(12, '\0')), "not described");
}

TEST(SafetensorsRejects, OffsetsThatDoNotMatchDtypeTimesShape) {
  expect_rejected(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", std::string(8, '\0')),
                  "needs 12");
  expect_rejected(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", std::string(8, '\0')),
                  "non-negative");
}

TEST(SafetensorsRejects, UnknownDtype) {
  expect_rejected(safetensors_bytes(R"({"w":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", std::string(8, '\0')),
                  "unknown dtype 'F33'");
}

TEST(SafetensorsRejects, DuplicateTensorName) {
  expect_rejected(safetensors_bytes("{" + kGoodEntry + "," + kGoodEntry + "}", std::string(8, '\0')),
                  "duplicate tensor name 'w'");
}

TEST(SafetensorsRejects, MissingFields) {
  expect_rejected(safetensors_bytes(R"({"w":{"shape":[2],"data_offsets":[0,8]}})", std::string(8, '\0')), "dtype");
  expect_rejected(safetensors_bytes(R"({"w":{"dtype":"F32","data_offsets":[0,8]}})", std::string(8, '\0')), "shape");
  expect_rejected(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[2]}})", std::string(8, '\0')), "data_offsets");
  expect_rejected(safetensors_bytes(R"({"__metadata__":{"format":1}})", ""), "not a string");
}

TEST(SafetensorsRejects, MissingFile) { EXPECT_THROW(SafetensorsFile("/nonexistent/x.safetensors"), CheckpointError); }

}  // namespace
}  // namespace mpitrain::checkpoint
