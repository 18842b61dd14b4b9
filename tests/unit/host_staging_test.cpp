// HostStaging: device blocks reach the host byte for byte (or converted) through two bounded buffers, in order, within the memory bound, and errors surface.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <numeric>
#include <stdexcept>

#include "runtime/checkpoint/host_staging.h"

namespace mpitrain::checkpoint {
namespace {

std::vector<torch::Tensor> sample_tensors() {
  torch::manual_seed(11);
  return {torch::randn({37, 5}), torch::Tensor(), torch::randint(0, 1000, {129}, torch::kInt64),
          torch::randn({3, 4, 5}).to(torch::kBFloat16), torch::empty({0}), torch::randn({1})};
}

// A memcpy copier that checks the two-slot protocol: a slot is refilled only after wait(),
// copies never exceed a chunk, and at most two are in flight.
class ProtocolCopier : public device::DeviceCopier {
 public:
  explicit ProtocolCopier(std::size_t chunk, int fail_at_wait = -1)
      : chunk_(chunk), buffers_{std::vector<char>(chunk), std::vector<char>(chunk)}, fail_at_wait_(fail_at_wait) {}
  std::size_t chunk_bytes() const override { return chunk_; }
  const void* buffer(int slot) const override { return buffers_[slot].data(); }
  void copy_async(int slot, const void* source, std::size_t bytes) override {
    sources.push_back(source);
    if (pending_[slot]) violations++;
    if (bytes > chunk_ || bytes == 0) violations++;
    pending_[slot] = true;
    std::memcpy(buffers_[slot].data(), source, bytes);
    copies++;
  }
  void wait(int slot) override {
    if (!pending_[slot]) violations++;
    pending_[slot] = false;
    if (waits++ == fail_at_wait_) throw std::runtime_error("cudaEventSynchronize: an illegal memory access");
  }
  static inline std::atomic<int> violations{0}, copies{0};
  std::vector<const void*> sources;  // in the order copied (read once the staging has ended)

 private:
  std::size_t chunk_;
  std::vector<char> buffers_[2];
  bool pending_[2] = {false, false};
  int fail_at_wait_, waits = 0;
};

TEST(HostStaging, CopiesEveryBlockExactlyWhateverTheChunk) {
  const auto tensors = sample_tensors();
  for (const std::size_t chunk : {1u, 7u, 64u, 4096u, 1u << 20}) {
    ProtocolCopier::violations = 0;
    ProtocolCopier::copies = 0;
    HostStaging staging(tensors, {chunk, true}, std::make_unique<ProtocolCopier>(chunk));
    // Asked for out of order: the later ones are copied first by then.
    for (const std::size_t i : {3u, 0u, 5u, 2u, 1u, 4u}) {
      const auto& host = staging.host(i);
      if (!tensors[i].defined()) {
        EXPECT_FALSE(host.defined());
        continue;
      }
      EXPECT_TRUE(host.is_cpu());
      EXPECT_EQ(host.scalar_type(), tensors[i].scalar_type());
      EXPECT_EQ(host.sizes(), tensors[i].sizes());
      EXPECT_EQ(0, std::memcmp(host.data_ptr(), tensors[i].data_ptr(), tensors[i].nbytes())) << i << " chunk " << chunk;
      if (tensors[i].numel() > 0) {
        EXPECT_NE(host.data_ptr(), tensors[i].data_ptr()) << "a copy, not the same memory";
      }
    }
    EXPECT_EQ(ProtocolCopier::violations, 0) << "chunk " << chunk;
    std::size_t expected_copies = 0;
    for (const auto& t : tensors)
      if (t.defined()) expected_copies += (t.nbytes() + chunk - 1) / chunk;
    EXPECT_EQ(static_cast<std::size_t>(ProtocolCopier::copies), expected_copies) << "chunk " << chunk;
  }
}

TEST(HostStaging, CpuTensorsPassThroughUnlessAsked) {
  const auto tensors = sample_tensors();
  HostStaging staging(tensors, {64, false});
  for (std::size_t i = 0; i < tensors.size(); ++i)
    if (tensors[i].defined()) {
      EXPECT_EQ(staging.host(i).data_ptr(), tensors[i].data_ptr());
    }
}

TEST(HostStaging, NonContiguousBlocksAreLeftForTheSaveToReject) {
  auto strided = torch::randn({6, 4}).t();
  HostStaging staging({strided}, {8, true}, std::make_unique<ProtocolCopier>(8));
  EXPECT_FALSE(staging.host(0).is_contiguous());
}

TEST(HostStaging, ACopyErrorReachesTheFailedBlockAndEveryLaterOne) {
  std::vector<torch::Tensor> tensors = {torch::randn({4}), torch::randn({64}), torch::randn({2})};
  HostStaging staging(tensors, {16, true}, std::make_unique<ProtocolCopier>(16, /*fail_at_wait=*/3));
  EXPECT_NO_THROW(staging.host(0));  // 16 bytes: one wait
  try {
    staging.host(1);
    FAIL() << "expected the copy error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("illegal memory access"), std::string::npos) << e.what();
  }
  EXPECT_THROW(staging.host(1), std::runtime_error);  // asked again: the same error
  EXPECT_THROW(staging.host(2), std::runtime_error);
}

TEST(HostStaging, LeavingEarlyStopsTheCopies) {
  std::vector<torch::Tensor> big;
  for (int i = 0; i < 8; ++i) big.push_back(torch::randn({1 << 18}));
  for (int round = 0; round < 20; ++round) {
    HostStaging staging(big, {4096, true}, std::make_unique<ProtocolCopier>(4096));
    if (round % 2) staging.host(0);
  }  // each destructor returns without the remaining blocks having been asked for
}

std::vector<torch::Tensor> blocks_of(int count, std::int64_t elements) {
  torch::manual_seed(5);
  std::vector<torch::Tensor> blocks;
  for (int i = 0; i < count; ++i) blocks.push_back(torch::randn({elements}));
  return blocks;
}

std::vector<BlockToStage> in_dtype(const std::vector<torch::Tensor>& tensors, at::ScalarType dtype) {
  std::vector<BlockToStage> blocks;
  for (const auto& t : tensors) blocks.push_back({t, dtype});
  return blocks;
}

TEST(HostStaging, ConvertsEachBlockToItsSavedDtype) {
  const auto tensors = blocks_of(5, 1001);
  for (const bool through_copier : {false, true}) {
    // Through the copier too (7-byte chunks: bf16 elements split across chunks).
    HostStaging staging(in_dtype(tensors, torch::kBFloat16), {}, {7, through_copier},
                        through_copier ? std::make_unique<ProtocolCopier>(7) : nullptr);
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      const auto expected = tensors[i].to(torch::kBFloat16);
      const auto& host = staging.host(i);
      ASSERT_EQ(host.scalar_type(), torch::kBFloat16);
      EXPECT_EQ(0, std::memcmp(host.data_ptr(), expected.data_ptr(), expected.nbytes())) << i;
    }
  }
  // Blocks already in their saved dtype on the host are not copied.
  HostStaging same(in_dtype(tensors, torch::kFloat32), {}, {7, false});
  EXPECT_EQ(same.host(2).data_ptr(), tensors[2].data_ptr());
  EXPECT_EQ(same.peak_held_bytes(), 0u);
}

TEST(HostStaging, AWriterThatReleasesAsItGoesHoldsAtMostTheBound) {
  const auto tensors = blocks_of(16, 16384);  // 64 KB each, 1 MB in all
  const std::uint64_t block = 65536, bound = 150 * 1024;
  for (const bool convert : {false, true}) {
    const auto dtype = convert ? torch::kFloat16 : torch::kFloat32;
    const auto saved_block = convert ? block / 2 : block;
    HostStaging staging(in_dtype(tensors, dtype), {}, {4096, !convert, bound},
                        convert ? nullptr : std::make_unique<ProtocolCopier>(4096));
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      EXPECT_TRUE(torch::equal(staging.host(i), tensors[i].to(dtype))) << i;
      staging.release(i);
    }
    EXPECT_LE(staging.peak_held_bytes(), bound);
    EXPECT_GE(staging.peak_held_bytes(), saved_block);
  }
}

TEST(HostStaging, AWriterThatNeedsEveryBlockAtOnceGetsThem) {
  const auto tensors = blocks_of(8, 4096);
  // A bound of one byte: each block is staged because it is asked for, in any order.
  HostStaging staging(in_dtype(tensors, torch::kFloat32), {}, {1000, true, 1}, std::make_unique<ProtocolCopier>(1000));
  for (const std::size_t i : {5u, 0u, 7u, 1u, 2u, 3u, 4u, 6u}) EXPECT_TRUE(torch::equal(staging.host(i), tensors[i]));
  for (std::size_t i = 0; i < tensors.size(); ++i) EXPECT_TRUE(torch::equal(staging.host(i), tensors[i])) << i;
  EXPECT_EQ(staging.peak_held_bytes(), 8u * 4096 * 4);
}

TEST(HostStaging, StagesInTheWritersOrderAndSkipsWhatItReleasedUnasked) {
  const auto tensors = blocks_of(4, 256);
  auto copier = std::make_unique<ProtocolCopier>(4096);
  const auto* seen = copier.get();
  HostStaging staging(in_dtype(tensors, torch::kFloat32), {3, 1, 0, 2}, {4096, true, 1}, std::move(copier));
  staging.release(1);  // its turn comes after block 3, which stays held until asked: never copied
  EXPECT_TRUE(torch::equal(staging.host(3), tensors[3]));
  EXPECT_TRUE(torch::equal(staging.host(2), tensors[2]));  // the last in order: every copy is made
  EXPECT_TRUE(torch::equal(staging.host(0), tensors[0]));
  EXPECT_THROW(staging.host(1), std::logic_error);
  const std::vector<const void*> expected = {tensors[3].data_ptr(), tensors[0].data_ptr(), tensors[2].data_ptr()};
  EXPECT_EQ(seen->sources, expected);
  EXPECT_THROW(HostStaging(in_dtype(tensors, torch::kFloat32), {0, 1, 1, 2}, {}), std::invalid_argument);
}

}  // namespace
}  // namespace mpitrain::checkpoint
