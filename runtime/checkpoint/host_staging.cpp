// Host copies of the blocks a rank writes, made from device memory in bounded chunks by a background thread while earlier blocks are written.
#include "runtime/checkpoint/host_staging.h"

#include <cstring>
#include <stdexcept>

namespace mpitrain::checkpoint {

HostStaging::HostStaging(std::vector<torch::Tensor> tensors, const StagingOptions& options,
                         std::unique_ptr<device::DeviceCopier> copier)
    : tensors_(std::move(tensors)), host_(tensors_.size()), options_(options), copier_(std::move(copier)) {
  const torch::Tensor* first = nullptr;
  for (const auto& t : tensors_)
    if (staged(t)) {
      first = &t;
      break;
    }
  if (!first) {
    host_ = tensors_;
    ready_ = tensors_.size();
    return;
  }
  // Made here, on the caller's thread: a GPU copier orders itself after the work queued so far.
  if (!copier_) copier_ = device::copier_for(first->device(), static_cast<std::size_t>(options_.chunk_bytes));
  thread_ = std::thread([this] { run(); });
}

HostStaging::~HostStaging() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

bool HostStaging::staged(const torch::Tensor& t) const {
  // A non-contiguous block is not copied: the save's own check then names it.
  return t.defined() && t.numel() > 0 && t.is_contiguous() && (!t.is_cpu() || options_.stage_cpu_tensors);
}

const torch::Tensor& HostStaging::host(std::size_t i) {
  std::unique_lock<std::mutex> lock(mutex_);
  progress_.wait(lock, [&] { return ready_ > i || error_; });
  if (ready_ <= i) std::rethrow_exception(error_);
  return host_[i];
}

void HostStaging::run() {
  try {
    for (std::size_t i = 0; i < tensors_.size(); ++i) {
      auto copied = staged(tensors_[i]) ? copy_to_host(tensors_[i]) : tensors_[i];
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_) return;
      host_[i] = std::move(copied);
      ready_ = i + 1;
      progress_.notify_all();
    }
  } catch (...) {
    std::lock_guard<std::mutex> lock(mutex_);
    error_ = std::current_exception();
    progress_.notify_all();
  }
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
