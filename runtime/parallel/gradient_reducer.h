// Data-parallel gradient reduction in buckets, launched from autograd hooks in one fixed order on all ranks.
#pragma once

#include <torch/torch.h>

#include <cstddef>
#include <memory>
#include <vector>

#include "runtime/comm/communicator.h"
#include "runtime/parallel/data_parallel_gradients.h"

namespace mpitrain::parallel {

struct ReducerOptions {
  // Chosen by measurement on this machine (see `mpitrain bench allreduce`): MPI_Allreduce
  // bandwidth peaks at 1-4 MB, so buckets near that size overlap and reduce fastest.
  std::size_t bucket_bytes = 4u << 20;
  // When true the caller has already scaled its loss by 1 / dp size (loss_scale()), so the
  // buckets are summed and not divided afterwards: dividing a 4 MB bucket costs as much as
  // a third of its allreduce here, and scaling the loss is free.
  bool loss_is_prescaled = false;
};

// Every parameter's .grad becomes a view into a flat bucket buffer (like DDP's
// gradient_as_bucket_view), so accumulation and the allreduce need no copies. Buckets hold
// parameters in reverse registration order, roughly the order backward produces them. When
// the last gradient of a bucket has been accumulated, its averaging allreduce starts, but
// only after every earlier bucket has started: all ranks launch in the same order.
class GradientReducer : public DataParallelGradients {
 public:
  GradientReducer(std::shared_ptr<comm::Communicator> dp, std::vector<torch::Tensor> parameters,
                  ReducerOptions options = {});
  ~GradientReducer() override;
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // Call before each backward. With sync=false (gradient accumulation micro-steps) the
  // hooks do nothing and gradients just accumulate locally.
  void prepare_for_backward(bool sync) override;
  // Call after the backward of a sync step: starts what is left, waits for every bucket.
  // Afterwards each .grad holds the average over the dp group.
  void finalize() override;
  // Sets every gradient to zero in place (the views must survive).
  void zero_grad();
  void step_done() override { zero_grad(); }

  std::size_t bucket_count() const { return buckets_.size(); }
  // The factor a caller with loss_is_prescaled multiplies its loss by.
  double loss_scale() const override { return 1.0 / dp_->size(); }
  std::size_t bucket_bytes(std::size_t i) const;

 private:
  struct Bucket {
    torch::Tensor buffer;
    std::vector<std::size_t> parameters;  // indices into parameters_
    std::size_t pending = 0;              // gradients not yet accumulated this step
    std::unique_ptr<comm::Work> work;
  };
  void on_gradient_ready(std::size_t parameter);
  void launch_ready_buckets();

  std::shared_ptr<comm::Communicator> dp_;
  std::vector<torch::Tensor> parameters_;
  comm::ReduceOp op_;
  std::vector<std::size_t> bucket_of_;  // parameter index -> bucket index
  std::vector<Bucket> buckets_;
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;  // kept alive so hooks persist
  std::size_t next_to_launch_ = 0;
  bool active_ = false;  // a sync step is between prepare_for_backward(true) and finalize()
};

// Copies rank `root`'s parameter values to every rank of `comm` (start of training).
void broadcast_parameters(comm::Communicator& comm, const std::vector<torch::Tensor>& parameters, int root = 0);

}  // namespace mpitrain::parallel
