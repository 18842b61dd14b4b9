// What a training step asks of a data-parallel gradient method: the plain bucketed all-reduce (GradientReducer) or ZeRO (ShardedDataParallel).
#pragma once

namespace mpitrain::parallel {

class DataParallelGradients {
 public:
  virtual ~DataParallelGradients() = default;
  // Before each backward; `sync` marks the optimizer step's last micro-batch.
  virtual void prepare_for_backward(bool sync) = 0;
  // After the sync micro-batch's backward: every reduction has landed in what the optimizer updates.
  virtual void finalize() = 0;
  // The factor the caller multiplies its loss by, so that summed gradients are the dp mean.
  virtual double loss_scale() const = 0;
  // After the optimizer step: parameters current on every rank, gradients zero.
  virtual void step_done() = 0;
};

}  // namespace mpitrain::parallel
