// A Communicator of one process, for unit tests of components that take one (no MPI): every collective is the identity.
#pragma once

#include <stdexcept>

#include "runtime/comm/communicator.h"

namespace mpitrain::testing {

class SingleRankCommunicator : public comm::Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  const std::string& name() const override { return name_; }
  std::unique_ptr<comm::Work> allreduce_async(torch::Tensor&, comm::ReduceOp) override { return done(); }
  void broadcast(torch::Tensor&, int) override {}
  torch::Tensor allgatherv(const torch::Tensor& tensor) override { return tensor.clone(); }
  std::unique_ptr<comm::Work> reduce_scatter_async(const torch::Tensor& input, torch::Tensor& output,
                                                   comm::ReduceOp) override {
    output.copy_(input.view(output.sizes()));
    return done();
  }
  std::unique_ptr<comm::Work> allgather_async(const torch::Tensor& input, torch::Tensor& output) override {
    output.copy_(input.view(output.sizes()));
    return done();
  }
  void send(const torch::Tensor&, int, int) override { throw std::logic_error("send: a single rank has no peer"); }
  void recv(torch::Tensor&, int, int) override { throw std::logic_error("recv: a single rank has no peer"); }
  void barrier() override {}
  std::shared_ptr<comm::Communicator> split(int, int, const std::string&) override {
    return std::make_shared<SingleRankCommunicator>();
  }

 private:
  struct Done : comm::Work {
    bool test() override { return true; }
    void wait() override {}
  };
  static std::unique_ptr<comm::Work> done() { return std::make_unique<Done>(); }
  std::string name_ = "single";
};

}  // namespace mpitrain::testing
