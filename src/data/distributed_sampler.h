// The distributed sampler: one permutation per epoch from the seed, dealt to ranks like PyTorch's DistributedSampler.
#pragma once

#include <cstdint>
#include <vector>

namespace mpitrain::data {

// Rank r's k-th batch is perm[world*(k*b + j) + r] for j < b, so the world's k-th batch is
// the block perm[k*world*b, (k+1)*world*b): the same samples one rank with batch world*b
// sees. The last incomplete global batch of an epoch is dropped, so every rank takes the
// same number of steps.
class DistributedSampler {
 public:
  DistributedSampler(std::int64_t dataset_size, int rank, int world, std::int64_t per_rank_batch, std::uint64_t seed,
                     bool shuffle);

  std::int64_t batches_per_epoch() const;
  std::vector<std::int64_t> batch(std::int64_t epoch, std::int64_t index_in_epoch);

 private:
  const std::vector<std::int64_t>& permutation(std::int64_t epoch);

  std::int64_t size_, batch_;
  int rank_, world_;
  std::uint64_t seed_;
  bool shuffle_;
  std::int64_t cached_epoch_ = -1;
  std::vector<std::int64_t> cached_;
};

}  // namespace mpitrain::data
