// HostStaging: device blocks reach the host byte for byte through two bounded buffers, in any order of asking, and errors surface.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
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

}  // namespace
}  // namespace mpitrain::checkpoint
