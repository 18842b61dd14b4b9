// The distributed sampler: one permutation per epoch from the seed, dealt to ranks like PyTorch's DistributedSampler.
#include "src/data/distributed_sampler.h"

#include <numeric>
#include <random>
#include <stdexcept>

namespace mpitrain::data {

DistributedSampler::DistributedSampler(std::int64_t dataset_size, int rank, int world, std::int64_t per_rank_batch,
                                       std::uint64_t seed, bool shuffle)
    : size_(dataset_size), batch_(per_rank_batch), rank_(rank), world_(world), seed_(seed), shuffle_(shuffle) {
  if (per_rank_batch <= 0) throw std::invalid_argument("batch size must be positive");
}

std::int64_t DistributedSampler::batches_per_epoch() const { return size_ / (batch_ * world_); }

const std::vector<std::int64_t>& DistributedSampler::permutation(std::int64_t epoch) {
  if (epoch == cached_epoch_) return cached_;
  cached_.resize(static_cast<std::size_t>(size_));
  std::iota(cached_.begin(), cached_.end(), 0);
  if (shuffle_) {
    // Our own Fisher-Yates over mt19937_64, so the order is the same with every standard library.
    std::mt19937_64 rng(seed_ * 0x9E3779B97F4A7C15ull + static_cast<std::uint64_t>(epoch));
    for (std::size_t i = cached_.size(); i > 1; --i) {
      const auto j = static_cast<std::size_t>(rng() % i);
      std::swap(cached_[i - 1], cached_[j]);
    }
  }
  cached_epoch_ = epoch;
  return cached_;
}

std::vector<std::int64_t> DistributedSampler::batch(std::int64_t epoch, std::int64_t index_in_epoch) {
  if (index_in_epoch < 0 || index_in_epoch >= batches_per_epoch()) throw std::out_of_range("batch index out of range");
  const auto& perm = permutation(epoch);
  std::vector<std::int64_t> out;
  for (std::int64_t j = 0; j < batch_; ++j)
    out.push_back(perm[static_cast<std::size_t>(world_ * (index_in_epoch * batch_ + j) + rank_)]);
  return out;
}

}  // namespace mpitrain::data
