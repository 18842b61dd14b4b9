// The GPU path on a real GPU: NCCL collectives ordered with LibTorch's stream, CPU tensors still over MPI, sharding's hand-over, staging and saves from device memory, autocast, fused attention and activation checkpointing.
#include <gtest/gtest.h>
#include <unistd.h>

#ifdef MPITRAIN_TORCH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>

#include "runtime/checkpoint/distributed_save.h"
#include "runtime/checkpoint/npy.h"
#include "runtime/checkpoint/remove_tree.h"
#include "runtime/comm/mpi_communicator.h"
#include "runtime/device/device.h"
#include "runtime/device/interval_timer.h"
#include "runtime/device/nccl_communicator.h"
#include "runtime/parallel/sharded_data_parallel.h"
#include "src/models/attention.h"
#include "src/models/inputs_json.h"
#include "src/models/autocast.h"
#include "src/models/pretrained.h"
#include "src/models/registry.h"
#include "tests/unit/test_files.h"

namespace mpitrain {
namespace {

namespace fs = std::filesystem;

std::shared_ptr<comm::MpiCommunicator> host() {
  static auto w = comm::MpiCommunicator::world();
  return w;
}

at::Device gpu() {
  static const at::Device d = device::select_device("cuda", host()->rank(), "test");
  return d;
}

std::shared_ptr<comm::Communicator> nccl() {
  static std::shared_ptr<comm::Communicator> c = device::world_for(gpu(), host());
  return c;
}

TEST(Nccl, CollectivesOnDeviceTensorsMatchTheMpiResult) {
  auto& c = *nccl();
  const auto n = c.size();
  torch::manual_seed(5 + c.rank());
  for (const auto dtype : {torch::kFloat32, torch::kBFloat16, torch::kInt64}) {
    auto cpu = (torch::rand({1000}) * 100).to(dtype);
    auto expected = cpu.clone();
    host()->allreduce(expected);  // MPI on the CPU copy
    auto device = cpu.to(gpu());
    device.mul_(1);  // queued on LibTorch's stream: the collective must wait for it
    c.allreduce(device);
    EXPECT_TRUE(torch::allclose(device.cpu().to(torch::kDouble), expected.to(torch::kDouble), 1e-2, 1e-2))
        << c10::toString(dtype);
  }
  auto x = torch::arange(6 * n, torch::TensorOptions().dtype(torch::kFloat32).device(gpu())).view({n * 6});
  auto gathered = c.allgather(x.narrow(0, 0, 6).contiguous());
  EXPECT_EQ(gathered.size(0), 6 * n);
  auto scattered = c.reduce_scatter(x);
  EXPECT_TRUE(torch::equal(scattered.cpu(), (x.narrow(0, 6 * c.rank(), 6) * n).cpu()));
  auto ragged = c.allgatherv(torch::full({c.rank() + 1, 2}, c.rank(), torch::TensorOptions().device(gpu())));
  EXPECT_EQ(ragged.size(0), n * (n + 1) / 2);
  auto b = torch::full({4}, c.rank() == 0 ? 7.0 : 0.0, torch::TensorOptions().device(gpu()));
  c.broadcast(b, 0);
  EXPECT_EQ(b.sum().item<double>(), 28.0);
  auto avg = torch::full({3}, 2.0 * (c.rank() + 1), torch::TensorOptions().device(gpu()));
  c.allreduce(avg, comm::ReduceOp::kAvg);
  EXPECT_DOUBLE_EQ(avg[0].item<double>(), static_cast<double>(n + 1));
}

TEST(Nccl, AsyncWorkOverlapsComputeAndOrdersWhatFollows) {
  auto& c = *nccl();
  auto grads = torch::ones({1 << 22}, torch::TensorOptions().device(gpu()));
  auto a = torch::randn({2048, 2048}, torch::TensorOptions().device(gpu()));
  auto work = c.allreduce_async(grads, comm::ReduceOp::kSum);
  auto busy = torch::matmul(a, a);  // runs beside the collective
  work->wait();                     // LibTorch's stream now waits for it, the host does not
  grads.mul_(2);
  EXPECT_DOUBLE_EQ(grads.sum().item<double>(), 2.0 * c.size() * (1 << 22));
  EXPECT_TRUE(busy.isfinite().all().item<bool>());
}

TEST(Nccl, CpuTensorsStillTravelOverMpiAndSplitsWork) {
  auto& c = *nccl();
  auto cpu = torch::full({5}, 1.0);
  c.allreduce(cpu);
  EXPECT_DOUBLE_EQ(cpu[0].item<double>(), c.size());
  auto sub = c.split(c.rank() % 2, c.rank(), "half");
  auto t = torch::ones({8}, torch::TensorOptions().device(gpu()));
  sub->allreduce(t);
  EXPECT_DOUBLE_EQ(t[0].item<double>(), sub->size());
  EXPECT_THROW(c.allreduce(t = torch::ones({4, 4}, torch::TensorOptions().device(gpu())).t()), std::invalid_argument);
}

TEST(Staging, DeviceBlocksReachTheHostExactlyInAnyChunking) {
  torch::manual_seed(9);
  std::vector<torch::Tensor> device_tensors = {torch::randn({1000, 33}, torch::TensorOptions().device(gpu())),
                                               torch::randn({7}, torch::TensorOptions().device(gpu())).to(torch::kBFloat16),
                                               torch::randint(0, 9, {12345}, torch::TensorOptions().dtype(torch::kInt64).device(gpu()))};
  for (const std::uint64_t chunk : {7ull, 4096ull, 1ull << 20}) {
    checkpoint::HostStaging staging(device_tensors, {chunk, false});
    for (std::size_t i = 0; i < device_tensors.size(); ++i) {
      EXPECT_TRUE(staging.host(i).is_cpu());
      EXPECT_TRUE(torch::equal(staging.host(i), device_tensors[i].cpu())) << i << " chunk " << chunk;
    }
  }
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

TEST(Staging, SavesFromGpuTensorsWriteTheBytesOfTheCpuSave) {
  torch::manual_seed(13);
  const auto root = fs::temp_directory_path() / ("mpitrain-gpu-save-" + std::to_string(::getpid()));
  std::vector<checkpoint::LocalTensor> on_cpu, on_gpu;
  for (int i = 0; i < 5; ++i) {
    checkpoint::LocalTensor t;
    t.layout.name = "layers." + std::to_string(i) + ".weight";
    t.layout.shape = {64, 48};
    t.layout.dtype = checkpoint::DType::F32;
    t.layout.block = checkpoint::Block::whole(t.layout.shape);
    t.data = torch::randn({64, 48});
    on_cpu.push_back(t);
    t.data = t.data.to(gpu());
    on_gpu.push_back(t);
  }
  // Through the MPI world, and through the NCCL world as training saves (its CPU traffic and
  // MPI-IO go over the MPI communicator it wraps); in the tensors' dtype and as bf16, converted
  // on the GPU block by block (on the copy stream) against the CPU's conversion.
  const std::vector<comm::Communicator*> worlds = {host().get(), nccl().get()};
  for (const auto mode : {checkpoint::SaveMode::kGather, checkpoint::SaveMode::kParallel, checkpoint::SaveMode::kSharded}) {
    for (auto* world : worlds) {
      for (const auto dtype : {checkpoint::DType::F32, checkpoint::DType::BF16}) {
        for (auto* locals : {&on_cpu, &on_gpu})
          for (auto& t : *locals) t.layout.dtype = dtype;
        checkpoint::DistributedSaveOptions options;
        options.mode = mode;
        options.io = checkpoint::SaveIo::kMpiio;  // parallel mode: the collective writer
        options.staging.chunk_bytes = 1000;       // several chunks per tensor, not aligned with rows
        options.staging.ahead_bytes = 1;          // one block held at a time
        checkpoint::save_distributed(*host(), (root / "cpu").string(), on_cpu, options);
        checkpoint::save_distributed(*world, (root / "gpu").string(), on_gpu, options);
        for (const auto& item : fs::directory_iterator(root / "cpu"))
          EXPECT_EQ(read_file(item.path()), read_file(root / "gpu" / item.path().filename())) << item.path();
        checkpoint::remove_tree(root);
      }
    }
  }
}

TEST(IntervalTimer, TimesTheStreamNotTheLaunch) {
  // What the metrics' exposed_comm and tp all-reduce times rest on: the host returns from
  // queued GPU work at once; the timer counts the stream's time.
  auto timer = device::interval_timer_for(gpu());
  auto a = torch::randn({4096, 4096}, torch::TensorOptions().device(gpu()));
  a.sum().item<float>();  // nothing queued before the measure
  const auto start = std::chrono::steady_clock::now();
  timer->measure([&] {
    for (int i = 0; i < 20; ++i) a = torch::matmul(a, a) / 64.0;  // ~2.7 TFLOP: tens of ms
  });
  const double launch = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double on_stream = timer->seconds();
  EXPECT_GT(on_stream, launch) << "launch " << launch << " s";
  EXPECT_GT(on_stream, 1e-3);
  timer->measure([] {});
  EXPECT_LT(timer->seconds() - on_stream, 1e-3);  // an empty stretch adds next to nothing
}

#ifdef MPITRAIN_TORCH_CUDA
TEST(Sharding, AModelBuiltOnTheHostReachesTheGpuShardByShard) {
  // The Trainer builds a sharded model on the host and hands it over: the GPU gets the shards
  // (zero1/2: and each parameter in the compute dtype), one tensor at a time, never a second
  // whole copy of the model (before, the whole model went to the GPU first).
  constexpr int kTensors = 8;
  constexpr std::int64_t kRows = 1024, kColumns = 4096;  // 16 MB in float32
  const auto tensor_bytes = static_cast<std::uint64_t>(kRows * kColumns * 4);
  for (const auto stage : {parallel::ShardingStage::kZero2, parallel::ShardingStage::kZero3}) {
    std::vector<torch::Tensor> params, values;
    for (int i = 0; i < kTensors; ++i) {
      values.push_back(torch::randn({kRows, kColumns}));
      params.push_back(values.back().clone().requires_grad_());
    }
    torch::cuda::synchronize();
    const auto index = gpu().index();
    c10::cuda::CUDACachingAllocator::resetPeakStats(index);
    const auto stat = [&] {
      // Entry 0: the aggregate over pools (StatType::AGGREGATE, whose namespace moved in 2.5).
      return c10::cuda::CUDACachingAllocator::getDeviceStats(index).allocated_bytes[0];
    };
    const auto before = static_cast<std::uint64_t>(stat().current);
    parallel::ShardingOptions options;
    options.stage = stage;
    options.device = gpu();
    options.compute_dtype = at::kBFloat16;
    parallel::ShardedDataParallel sharded(nccl(), params, std::vector<std::int64_t>(kTensors, kRows),
                                          std::vector<int>(kTensors, 0), options);
    std::uint64_t shard_bytes = 0;
    for (int i = 0; i < kTensors; ++i) {
      const auto& shard = sharded.shards()[static_cast<std::size_t>(i)];
      ASSERT_TRUE(shard.is_cuda());
      shard_bytes += shard.nbytes();
      const auto& s = sharded.layout()[static_cast<std::size_t>(i)];
      EXPECT_TRUE(torch::equal(shard.cpu().view({-1}), values[static_cast<std::size_t>(i)].view({-1}).narrow(
                                                           0, s.start * s.row_numel, s.count * s.row_numel)));
      EXPECT_TRUE(params[static_cast<std::size_t>(i)].is_cuda());
      EXPECT_EQ(params[static_cast<std::size_t>(i)].numel(), stage == parallel::ShardingStage::kZero3 ? 0 : kRows * kColumns);
    }
    // zero3: the shards and nothing else; zero2 adds the whole bf16 parameters. One tensor's
    // worth of slack for a conversion in flight.
    const auto expected = shard_bytes + (stage == parallel::ShardingStage::kZero3 ? 0 : kTensors * tensor_bytes / 2);
    EXPECT_LE(static_cast<std::uint64_t>(stat().peak) - before, expected + tensor_bytes);
  }
}

TEST(ActivationCheckpointing, OnTheGpuTheSameStepForLessMemory) {
  // GPT-2 with dropout (the GPU's generator, fused attention's dropout included) under bf16
  // autocast; backward runs on autograd's device thread, where the recomputation happens.
  const nlohmann::json config = {{"model_type", "gpt2"}, {"vocab_size", 512}, {"n_embd", 256}, {"n_layer", 6},
                                 {"n_head", 4}, {"n_positions", 1024}, {"attn_pdrop", 0.1},
                                 {"resid_pdrop", 0.1}, {"embd_pdrop", 0.1}};
  torch::manual_seed(5);
  auto model = models::create_model(config, "gpt2");
  model->to(gpu());
  model->train();
  const auto input_ids = torch::randint(0, 512, {8, 1024}, torch::TensorOptions().dtype(torch::kInt64).device(gpu()));
  const auto index = gpu().index();
  std::map<bool, std::map<std::string, torch::Tensor>> gradients;
  std::map<bool, std::int64_t> peak;
  std::map<bool, torch::Tensor> next_random;
  for (bool checkpointing : {false, true}) {
    model->set_gradient_checkpointing(checkpointing);
    model->zero_grad();
    torch::cuda::manual_seed_all(9);
    torch::cuda::synchronize();
    c10::cuda::CUDACachingAllocator::resetPeakStats(index);
    const auto before = c10::cuda::CUDACachingAllocator::getDeviceStats(index).allocated_bytes[0].current;
    torch::Tensor loss;
    {
      models::AutocastScope autocast(gpu(), true);
      models::ModelInputs inputs;
      inputs.input_ids = input_ids;
      loss = model->forward(inputs).to(torch::kFloat32).pow(2).mean();
    }
    loss.backward();
    torch::cuda::synchronize();
    peak[checkpointing] = c10::cuda::CUDACachingAllocator::getDeviceStats(index).allocated_bytes[0].peak - before;
    for (const auto& item : model->named_parameters()) gradients[checkpointing][item.key()] = item.value().grad().clone();
    next_random[checkpointing] = torch::rand({4}, torch::TensorOptions().device(gpu())).cpu();
  }
  for (const auto& [name, gradient] : gradients[false]) {
    // The same dropout masks and bf16 casts; fused attention's backward may sum in another
    // order. A different dropout mask would move gradients by their own size.
    const auto scale = gradient.abs().max().item<double>() + 1e-12;
    EXPECT_LE((gradients[true].at(name) - gradient).abs().max().item<double>(), 2e-2 * scale) << name;
  }
  EXPECT_TRUE(torch::equal(next_random[true], next_random[false])) << "the GPU generator moved differently";
  std::printf("activation checkpointing, GPT-2 6 x 256, batch 8 x 1024, bf16: peak %.1f MB kept vs %.1f MB recomputed\n",
              peak[false] / 1e6, peak[true] / 1e6);
  EXPECT_LT(peak[true], peak[false] / 2);
}
#endif

TEST(Autocast, BfloatMatmulsOnTheGpuAndFreshWeightsEveryForward) {
  auto w = torch::randn({64, 64}, torch::TensorOptions().device(gpu()).requires_grad(true));
  auto x = torch::randn({8, 64}, torch::TensorOptions().device(gpu()));
  torch::Tensor first, second;
  {
    models::AutocastScope scope(gpu(), true);
    first = torch::matmul(x, w);
  }
  EXPECT_EQ(first.scalar_type(), torch::kBFloat16);
  {
    torch::NoGradGuard no_grad;
    w.mul_(2);
  }
  {
    models::AutocastScope scope(gpu(), true);
    second = torch::matmul(x, w);
  }
  EXPECT_TRUE(torch::allclose(second.to(torch::kFloat), first.to(torch::kFloat) * 2, 2e-2, 2e-2));
  EXPECT_EQ(torch::matmul(x, w).scalar_type(), torch::kFloat32);  // off outside the scope
}

TEST(Attention, FusedKernelMatchesTheEagerPath) {
  torch::manual_seed(17);
  const auto q = torch::randn({2, 4, 16, 8}), k = torch::randn({2, 4, 16, 8}), v = torch::randn({2, 4, 16, 8});
  auto padding = torch::ones({2, 16}, torch::kInt64);
  padding[1].narrow(0, 12, 4).fill_(0);
  models::AttentionOptions options;
  options.scale = 1.0 / std::sqrt(8.0);
  options.causal = true;
  const auto causal_cpu = models::dot_product_attention(
      q, k, v, models::additive_attention_mask({}, 2, 16, true, torch::kFloat32), options);
  ASSERT_TRUE(models::fused_attention(q.to(gpu())));
  const auto causal_gpu = models::dot_product_attention(q.to(gpu()), k.to(gpu()), v.to(gpu()), {}, options);
  EXPECT_TRUE(torch::allclose(causal_gpu.cpu(), causal_cpu, 1e-3, 1e-3));
  const auto mask = models::additive_attention_mask(padding, 2, 16, true, torch::kFloat32);
  const auto padded_cpu = models::dot_product_attention(q, k, v, mask, options);
  const auto padded_gpu = models::dot_product_attention(q.to(gpu()), k.to(gpu()), v.to(gpu()), mask.to(gpu()), options);
  EXPECT_TRUE(torch::allclose(padded_gpu.cpu(), padded_cpu, 1e-3, 1e-3));
}

// Every fixture family on the GPU (fused attention, with the padded row masked) against
// transformers' logits; 1e-3 rather than the CPU's 1e-4 for the GPU's kernels.
TEST(Models, FixtureLogitsOnTheGpuMatchTransformers) {
  torch::NoGradGuard no_grad;
  for (const std::string family : {"llama", "llama_tied", "gpt2", "bert_seqcls"}) {
    auto loaded = models::from_pretrained(testing::fixture(family + "/single"));
    loaded.model->to(gpu());
    loaded.model->eval();
    auto inputs = models::read_inputs_json(testing::fixture(family + "/inputs.json"));
    for (auto* t : {&inputs.input_ids, &inputs.attention_mask, &inputs.token_type_ids})
      if (t->defined()) *t = t->to(gpu());
    const auto logits = loaded.model->forward(inputs).cpu();
    const auto reference = checkpoint::read_npy_float32(testing::fixture(family + "/logits.npy"));
    auto expected = torch::from_blob(const_cast<float*>(reference.data.data()), reference.shape, torch::kFloat32);
    ASSERT_EQ(logits.sizes(), expected.sizes()) << family;
    auto diff = (logits - expected).abs();
    if (logits.dim() == 3 && inputs.attention_mask.defined())
      diff = diff * inputs.attention_mask.cpu().unsqueeze(-1).to(torch::kFloat32);
    EXPECT_LT(diff.max().item<double>(), 1e-3) << family;
  }
}

}  // namespace
}  // namespace mpitrain
