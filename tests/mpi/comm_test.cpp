// The MPI Communicator, the mesh, error agreement, the gradient reducer and ZeRO's agreed set-up, on 2 and 4 ranks.
#include <gtest/gtest.h>

#include "runtime/comm/agreement.h"
#include "runtime/comm/mesh.h"
#include "runtime/comm/mpi_communicator.h"
#include "runtime/parallel/gradient_reducer.h"
#include "runtime/parallel/sharded_data_parallel.h"

namespace mpitrain::comm {
namespace {

std::shared_ptr<MpiCommunicator> world() {
  static auto w = MpiCommunicator::world();
  return w;
}

TEST(Communicator, AllreduceSumAvgMaxMin) {
  auto& w = *world();
  const double r = w.rank(), n = w.size();
  auto t = torch::full({5}, r + 1, torch::kFloat32);
  w.allreduce(t, ReduceOp::kSum);
  EXPECT_TRUE(torch::allclose(t, torch::full({5}, n * (n + 1) / 2)));
  t = torch::full({3}, r, torch::kFloat64);
  w.allreduce(t, ReduceOp::kAvg);
  EXPECT_DOUBLE_EQ(t[0].item<double>(), (n - 1) / 2);
  auto i = torch::tensor({static_cast<std::int64_t>(r)}, torch::kInt64);
  w.allreduce(i, ReduceOp::kMax);
  EXPECT_EQ(i.item<std::int64_t>(), w.size() - 1);
  i.fill_(static_cast<std::int64_t>(r));
  w.allreduce(i, ReduceOp::kMin);
  EXPECT_EQ(i.item<std::int64_t>(), 0);
}

TEST(Communicator, AllreduceOfBfloat16ReducesInFloat32) {
  auto& w = *world();
  auto t = torch::full({4}, 1.0 + w.rank(), torch::kBFloat16);
  w.allreduce(t, ReduceOp::kSum);
  EXPECT_EQ(t.scalar_type(), torch::kBFloat16);
  EXPECT_FLOAT_EQ(t[0].item<float>(), static_cast<float>(w.size() * (w.size() + 1) / 2));
}

TEST(Communicator, AsyncAllreduceCompletesOnWait) {
  auto& w = *world();
  auto a = torch::ones({1000});
  auto b = torch::ones({10}) * w.rank();
  auto wa = w.allreduce_async(a, ReduceOp::kSum);
  auto wb = w.allreduce_async(b, ReduceOp::kMax);
  wb->wait();
  wa->wait();
  EXPECT_FLOAT_EQ(a[999].item<float>(), static_cast<float>(w.size()));
  EXPECT_FLOAT_EQ(b[0].item<float>(), static_cast<float>(w.size() - 1));
}

TEST(Communicator, BroadcastAllgatherAllgathervReduceScatter) {
  auto& w = *world();
  auto t = torch::full({2, 3}, static_cast<float>(w.rank()));
  w.broadcast(t, w.size() - 1);
  EXPECT_FLOAT_EQ(t.sum().item<float>(), 6.f * static_cast<float>(w.size() - 1));

  auto gathered = w.allgather(torch::full({2}, static_cast<float>(w.rank())));
  ASSERT_EQ(gathered.size(0), 2 * w.size());
  for (int r = 0; r < w.size(); ++r) EXPECT_FLOAT_EQ(gathered[2 * r + 1].item<float>(), static_cast<float>(r));

  // Rank r contributes r+1 rows of 2.
  auto mine = torch::full({w.rank() + 1, 2}, static_cast<float>(w.rank()));
  auto all = w.allgatherv(mine);
  ASSERT_EQ(all.size(0), w.size() * (w.size() + 1) / 2);
  EXPECT_FLOAT_EQ(all[all.size(0) - 1][1].item<float>(), static_cast<float>(w.size() - 1));

  auto input = torch::arange(2 * w.size(), torch::kFloat32).view({w.size(), 2});
  auto block = w.reduce_scatter(input, ReduceOp::kSum);
  EXPECT_EQ(block.sizes(), (std::vector<std::int64_t>{1, 2}));
  EXPECT_FLOAT_EQ(block[0][0].item<float>(), static_cast<float>(2 * w.rank() * w.size()));
}

TEST(Communicator, NonblockingReduceScatterAndAllgatherIntoBuffers) {
  // ZeRO's flat buffers: rank r's chunk of the sum, then every rank's chunk back; bfloat16
  // is reduced in float32 (sums of small integers stay exact).
  auto& w = *world();
  for (auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    const std::int64_t chunk = 3;
    auto input = (torch::arange(chunk * w.size(), torch::kFloat32) + w.rank()).to(dtype);
    auto output = torch::empty({chunk}, input.options());
    auto reduce = w.reduce_scatter_async(input, output, ReduceOp::kSum);
    reduce->wait();
    const double ranks = w.size(), rank_sum = ranks * (ranks - 1) / 2;
    for (std::int64_t i = 0; i < chunk; ++i)
      EXPECT_DOUBLE_EQ(output[i].item<double>(), ranks * static_cast<double>(w.rank() * chunk + i) + rank_sum);
    auto gathered = torch::empty({chunk * w.size()}, input.options());
    auto gather = w.allgather_async(output, gathered);
    gather->wait();
    for (int r = 0; r < w.size(); ++r)
      EXPECT_DOUBLE_EQ(gathered[r * chunk].item<double>(), ranks * static_cast<double>(r * chunk) + rank_sum);
  }
  auto wrong = torch::empty({2});
  EXPECT_THROW(w.reduce_scatter_async(torch::zeros({3 * w.size()}), wrong, ReduceOp::kSum), std::invalid_argument);
}

TEST(Communicator, SendRecvRing) {
  auto& w = *world();
  const int next = (w.rank() + 1) % w.size(), previous = (w.rank() + w.size() - 1) % w.size();
  auto out = torch::full({4}, static_cast<float>(w.rank()));
  auto in = torch::empty({4});
  if (w.rank() % 2 == 0) {  // even ranks send first, odd ranks receive first: no deadlock
    w.send(out, next, 5);
    w.recv(in, previous, 5);
  } else {
    w.recv(in, previous, 5);
    w.send(out, next, 5);
  }
  EXPECT_FLOAT_EQ(in[0].item<float>(), static_cast<float>(previous));
}

TEST(Mesh, SplitsWorldIntoDpAndTpGroups) {
  const int tp = world()->size() >= 4 ? 2 : 1;
  Mesh mesh(world(), tp);
  EXPECT_EQ(mesh.dp_size() * mesh.tp_size(), world()->size());
  EXPECT_EQ(mesh.tp_rank(), world()->rank() % tp);
  EXPECT_EQ(mesh.dp_rank(), world()->rank() / tp);
  // A tp-group allreduce sums only the group's ranks.
  auto t = torch::tensor({static_cast<float>(world()->rank())});
  mesh.tp().allreduce(t, ReduceOp::kSum);
  const int base = (world()->rank() / tp) * tp;
  EXPECT_FLOAT_EQ(t.item<float>(), static_cast<float>(tp * base + tp * (tp - 1) / 2));
  EXPECT_THROW(Mesh(world(), world()->size() + 1), std::invalid_argument);
}

TEST(Agreement, OneRanksFailureFailsEveryRankWithItsMessage) {
  auto& w = *world();
  try {
    run_agreed(w, [&] {
      if (w.rank() == w.size() - 1) throw std::runtime_error("disk full on the last rank");
    });
    FAIL() << "no rank failed";
  } catch (const AgreedError& e) {
    EXPECT_STREQ(e.what(), "disk full on the last rank");
  }
  EXPECT_NO_THROW(run_agreed(w, [] {}));
}

// One rank failing to take its shards (a deferred initialisation, or the GPU's memory) must
// not leave the others in their first collective until the timeout.
TEST(ShardedDataParallel, OneRanksFailureTakingShardsFailsEveryRankAtConstruction) {
  auto& w = *world();
  auto make_parameters = [] {
    return std::vector<torch::Tensor>{torch::arange(12, torch::kFloat).view({6, 2}).requires_grad_(true),
                                      torch::arange(5, torch::kFloat).requires_grad_(true)};
  };
  for (auto stage : {parallel::ShardingStage::kZero1, parallel::ShardingStage::kZero3}) {
    parallel::ShardingOptions options;
    options.stage = stage;
    int calls = 0;
    options.before_sharding = [&](const torch::Tensor&) {
      if (++calls == 2 && w.rank() == w.size() - 1) throw std::runtime_error("out of memory making parameter 2");
    };
    try {
      parallel::ShardedDataParallel failing(world(), make_parameters(), {6, 5}, {0, 1}, options);
      FAIL() << "no rank failed";
    } catch (const AgreedError& e) {
      EXPECT_STREQ(e.what(), "out of memory making parameter 2");
    }
    // Every rank left the constructor at the same point: the next collective pairs up.
    options.before_sharding = nullptr;
    auto parameters = make_parameters();
    parallel::ShardedDataParallel sharded(world(), parameters, {6, 5}, {0, 1}, options);
    const auto& s = sharded.layout()[0];
    EXPECT_TRUE(torch::equal(sharded.shards()[0].detach(), torch::arange(12, torch::kFloat).view({6, 2}).narrow(0, s.start, s.count)));
    auto t = torch::ones({1});
    w.allreduce(t, ReduceOp::kSum);
    EXPECT_EQ(t.item<float>(), static_cast<float>(w.size()));
  }
}

TEST(GradientReducer, AveragesGradientsAcrossRanksInSeveralBuckets) {
  auto& w = *world();
  torch::manual_seed(1);
  auto linear1 = torch::nn::Linear(8, 16), linear2 = torch::nn::Linear(16, 4);
  std::vector<torch::Tensor> params;
  for (auto* m : {linear1.get(), linear2.get()})
    for (auto& p : m->parameters()) params.push_back(p);
  parallel::ReducerOptions options;
  options.bucket_bytes = 300;  // forces several buckets
  parallel::GradientReducer reducer(world(), params, options);
  EXPECT_GT(reducer.bucket_count(), 2u);

  // Each rank's input differs; the reduced gradient must be the mean of the per-rank gradients.
  auto input_for = [](int rank) { return torch::ones({3, 8}) * (rank + 1); };
  std::vector<torch::Tensor> expected;
  {
    torch::NoGradGuard guard;
    for (auto& p : params) expected.push_back(torch::zeros_like(p));
  }
  for (int r = 0; r < w.size(); ++r) {
    auto copy1 = torch::nn::Linear(8, 16), copy2 = torch::nn::Linear(16, 4);
    {
      torch::NoGradGuard guard;
      for (std::size_t i = 0; i < 2; ++i) {
        copy1->parameters()[i].copy_(linear1->parameters()[i]);
        copy2->parameters()[i].copy_(linear2->parameters()[i]);
      }
    }
    copy2(torch::relu(copy1(input_for(r)))).pow(2).sum().backward();
    std::vector<torch::Tensor> grads;
    for (auto* m : {copy1.get(), copy2.get()})
      for (auto& p : m->parameters()) grads.push_back(p.grad());
    for (std::size_t i = 0; i < params.size(); ++i) expected[i] += grads[i] / w.size();
  }
  for (int step = 0; step < 2; ++step) {  // twice: buckets are reused across steps
    reducer.zero_grad();
    reducer.prepare_for_backward(true);
    linear2(torch::relu(linear1(input_for(w.rank())))).pow(2).sum().backward();
    reducer.finalize();
    for (std::size_t i = 0; i < params.size(); ++i)
      EXPECT_TRUE(torch::allclose(params[i].grad(), expected[i], 1e-5, 1e-5)) << "parameter " << i;
  }
}

}  // namespace
}  // namespace mpitrain::comm
