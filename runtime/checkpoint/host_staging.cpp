// Host copies of the blocks a rank writes, made (and converted to the saved dtype) block by block by a background thread while earlier blocks are written.
#include "runtime/checkpoint/host_staging.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <numeric>
#include <stdexcept>
#include <string>

namespace mpitrain::checkpoint {

namespace {

std::vector<BlockToStage> in_own_dtypes(std::vector<torch::Tensor> tensors) {
  std::vector<BlockToStage> blocks;
  for (auto& t : tensors) {
    const auto dtype = t.defined() ? t.scalar_type() : at::kFloat;
    blocks.push_back({std::move(t), dtype});
  }
  return blocks;
}

}  // namespace

HostStaging::HostStaging(std::vector<torch::Tensor> tensors, const StagingOptions& options,
                         std::unique_ptr<device::DeviceCopier> copier)
    : HostStaging(in_own_dtypes(std::move(tensors)), {}, options, std::move(copier)) {}

HostStaging::HostStaging(std::vector<BlockToStage> blocks, std::vector<std::size_t> order,
                         const StagingOptions& options, std::unique_ptr<device::DeviceCopier> copier)
    : blocks_(std::move(blocks)),
      host_(blocks_.size()),
      order_(std::move(order)),
      position_(blocks_.size(), blocks_.size()),
      released_(blocks_.size(), false),
      options_(options),
      copier_(std::move(copier)) {
  if (order_.empty()) {
    order_.resize(blocks_.size());
    std::iota(order_.begin(), order_.end(), std::size_t{0});
  }
  for (std::size_t k = 0; k < order_.size(); ++k) {
    if (order_[k] >= blocks_.size() || position_[order_[k]] != blocks_.size())
      throw std::invalid_argument("staging order is not a permutation of the blocks");
    position_[order_[k]] = k;
  }
  if (order_.size() != blocks_.size()) throw std::invalid_argument("staging order is not a permutation of the blocks");
  const BlockToStage* first_copied = nullptr;
  bool any_staged = false;
  for (std::size_t i = 0; i < blocks_.size(); ++i) {
    if (!staged(i)) continue;
    any_staged = true;
    if (!blocks_[i].data.is_cpu() || options_.stage_cpu_tensors) {
      first_copied = &blocks_[i];
      break;
    }
  }
  if (!any_staged) {
    for (std::size_t i = 0; i < blocks_.size(); ++i) host_[i] = blocks_[i].data;
    done_ = blocks_.size();
    return;
  }
  if (first_copied) {
    copier_device_ = first_copied->data.device();
    // Made here, on the caller's thread: a GPU copier orders itself after the work queued so far.
    // Its failure (no pinned memory left) is the blocks' error, raised where they are asked
    // for: inside the save's agreed steps, not on this rank alone.
    try {
      if (!copier_) copier_ = device::copier_for(copier_device_, static_cast<std::size_t>(options_.chunk_bytes));
    } catch (...) {
      error_ = std::current_exception();
      return;
    }
  }
  thread_ = std::thread([this] { run(); });
}

HostStaging::~HostStaging() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  progress_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool HostStaging::staged(std::size_t i) const {
  // A non-contiguous block is not copied: the save's own check then names it.
  const auto& t = blocks_[i].data;
  return t.defined() && t.numel() > 0 && t.is_contiguous() &&
         (!t.is_cpu() || options_.stage_cpu_tensors || t.scalar_type() != blocks_[i].dtype);
}

std::uint64_t HostStaging::staged_bytes(std::size_t i) const {
  return staged(i) ? static_cast<std::uint64_t>(blocks_[i].data.numel()) * c10::elementSize(blocks_[i].dtype) : 0;
}

const torch::Tensor& HostStaging::host(std::size_t i) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (i >= blocks_.size()) throw std::out_of_range("staged block " + std::to_string(i) + " does not exist");
  if (released_[i]) throw std::logic_error("staged block " + std::to_string(i) + " was asked for after its release");
  if (position_[i] >= done_ && !error_) {
    // Asking lifts the bound on what is held up to this block: the writer needs it beside the others.
    demanded_ = std::max(demanded_, position_[i] + 1);
    progress_.notify_all();
    progress_.wait(lock, [&] { return position_[i] < done_ || error_; });
  }
  if (position_[i] >= done_) std::rethrow_exception(error_);
  return host_[i];
}

void HostStaging::release(std::size_t i) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (i >= blocks_.size() || released_[i]) return;
  released_[i] = true;
  if (host_[i].defined() && staged(i)) held_ -= staged_bytes(i);
  host_[i] = torch::Tensor();
  progress_.notify_all();
}

std::uint64_t HostStaging::peak_held_bytes() {
  std::lock_guard<std::mutex> lock(mutex_);
  return peak_held_;
}

double HostStaging::copy_seconds() {
  std::lock_guard<std::mutex> lock(mutex_);
  return copy_seconds_;
}

void HostStaging::run() {
  try {
    for (std::size_t k = 0; k < order_.size(); ++k) {
      const auto i = order_[k];
      const auto bytes = staged_bytes(i);
      bool skip = false;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        progress_.wait(lock, [&] {
          return stopping_ || released_[i] || bytes == 0 || held_ == 0 || held_ + bytes <= options_.ahead_bytes ||
                 k < demanded_;
        });
        if (stopping_) return;
        skip = released_[i];  // the writer no longer needs it
      }
      torch::Tensor copied;
      const auto started = std::chrono::steady_clock::now();
      if (!skip) copied = staged(i) ? stage(blocks_[i]) : blocks_[i].data;
      const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      std::lock_guard<std::mutex> lock(mutex_);
      copy_seconds_ += took;
      if (stopping_) return;
      if (!released_[i]) {
        host_[i] = std::move(copied);
        held_ += bytes;
        peak_held_ = std::max(peak_held_, held_);
      }
      done_ = k + 1;
      progress_.notify_all();
    }
  } catch (...) {
    std::lock_guard<std::mutex> lock(mutex_);
    error_ = std::current_exception();
    progress_.notify_all();
  }
}

torch::Tensor HostStaging::stage(const BlockToStage& block) {
  auto source = block.data;
  if (source.scalar_type() != block.dtype)
    source = source.is_cpu() || !copier_ ? source.to(block.dtype) : copier_->convert(source, block.dtype);
  if (source.is_cpu() && !options_.stage_cpu_tensors) return source;  // converted on the host: already a copy
  if (source.device() != copier_device_)
    throw std::runtime_error("a block on " + source.device().str() + " cannot be staged beside blocks on " +
                             copier_device_.str());
  return copy_to_host(source);
}

torch::Tensor HostStaging::copy_to_host(const torch::Tensor& source) {
  auto target = torch::empty(source.sizes(), source.options().device(torch::kCPU));
  const auto* from = static_cast<const std::uint8_t*>(source.data_ptr());
  auto* to = static_cast<std::uint8_t*>(target.data_ptr());
  const std::uint64_t total = source.nbytes(), chunk = copier_->chunk_bytes();
  auto length_at = [&](std::uint64_t begin) { return static_cast<std::size_t>(std::min(chunk, total - begin)); };
  // Chunk k sits in slot k % 2: chunk k+1 is queued before chunk k is drained.
  int slot = 0;
  copier_->copy_async(slot, from, length_at(0));
  for (std::uint64_t begin = 0; begin < total; begin += chunk) {
    if (begin + chunk < total) copier_->copy_async(slot ^ 1, from + begin + chunk, length_at(begin + chunk));
    copier_->wait(slot);
    std::memcpy(to + begin, copier_->buffer(slot), length_at(begin));
    slot ^= 1;
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) throw std::runtime_error("staging stopped");
  }
  return target;
}

}  // namespace mpitrain::checkpoint
