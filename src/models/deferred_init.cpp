// Parameters registered empty and initialised later one at a time, with the random numbers construction would have drawn: a rank that shards a model as it is made never holds it whole.
#include "src/models/deferred_init.h"

#include <ATen/CPUGeneratorImpl.h>

#include <mutex>

namespace mpitrain::models {

namespace {
thread_local DeferredInitialisation* current = nullptr;
}  // namespace

DeferredInitialisation::DeferredInitialisation() {
  auto generator = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator_state_ = generator.get_state();
  current = this;
}

DeferredInitialisation::~DeferredInitialisation() { stop_recording(); }

void DeferredInitialisation::stop_recording() {
  if (current == this) current = nullptr;
}

DeferredInitialisation* DeferredInitialisation::recording() { return current; }

void DeferredInitialisation::record(const torch::Tensor& parameter, std::vector<std::int64_t> full_shape,
                                    std::function<torch::Tensor(at::IntArrayRef)> init, const Shard& shard) {
  index_[parameter.unsafeGetTensorImpl()] = entries_.size();
  entries_.push_back({parameter, std::move(full_shape), std::move(init), shard});
}

void DeferredInitialisation::materialise(const torch::Tensor& parameter) {
  const auto found = index_.find(parameter.unsafeGetTensorImpl());
  if (found == index_.end() || found->second < next_) return;
  torch::NoGradGuard no_grad;
  // The draws come from this recorder's own sequence (the generator as it was when recording
  // began), lent the default generator for the duration: init functions use the default.
  // (Its mutex is held only around the swaps: the draws take it themselves.) Swapped back
  // whatever happens, so a failed make leaves neither sequence disturbed.
  struct LentGenerator {
    at::Generator generator = at::detail::getDefaultCPUGenerator();
    torch::Tensor& own_state;
    torch::Tensor outside;
    explicit LentGenerator(torch::Tensor& state) : own_state(state) {
      std::lock_guard<std::mutex> lock(generator.mutex());
      outside = generator.get_state();
      generator.set_state(own_state);
    }
    ~LentGenerator() {
      std::lock_guard<std::mutex> lock(generator.mutex());
      own_state = generator.get_state();
      generator.set_state(outside);
    }
  } lent(generator_state_);
  for (; next_ <= found->second; ++next_) {
    auto& entry = entries_[next_];
    entry.parameter.set_data(slice_for_shard(entry.init(entry.full_shape), entry.shard));
    entry = Entry{};  // its closure and its reference to the parameter go
  }
}

}  // namespace mpitrain::models
