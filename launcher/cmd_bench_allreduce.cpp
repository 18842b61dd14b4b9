// `mpitrain bench allreduce`: a size sweep like nccl-tests, our Communicator and gradient reducer beside raw MPI_Allreduce.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>

#include "launcher/bench_stats.h"
#include "launcher/options.h"
#include "runtime/comm/launch.h"
#include "runtime/comm/mpi_communicator.h"
#include "runtime/parallel/gradient_reducer.h"

namespace mpitrain::launcher {
namespace {

using Clock = std::chrono::steady_clock;

// Median seconds of `iterations` timed calls after warm-up; every rank agrees on the time
// (the slowest rank's), so the figures are the job's, not one rank's.
template <typename F>
double time_op(F&& op, int iterations) {
  for (int i = 0; i < 3; ++i) op();
  std::vector<double> samples;
  for (int i = 0; i < iterations; ++i) {
    MPI_Barrier(MPI_COMM_WORLD);
    const auto start = Clock::now();
    op();
    double t = std::chrono::duration<double>(Clock::now() - start).count();
    MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    samples.push_back(t);
  }
  return median(samples);
}

}  // namespace

int run_bench_allreduce(const Args& args) {
  po::options_description options("bench allreduce options");
  std::size_t min_bytes = 1024, max_bytes = 64u << 20;
  int iterations = 20;
  double bucket_mb = 4;
  options.add_options()("min_bytes", po::value(&min_bytes)->default_value(min_bytes), "")(
      "max_bytes", po::value(&max_bytes)->default_value(max_bytes), "")(
      "iterations", po::value(&iterations)->default_value(iterations), "timed runs per size (median)")(
      "bucket_mb", po::value(&bucket_mb)->default_value(bucket_mb), "gradient reducer bucket size");
  po::variables_map values;
  if (!parse_options("bench allreduce", "[options] (under mpirun)", args, options, {}, values)) return 0;

  comm::MpiSession mpi(nullptr, nullptr);
  auto world = comm::MpiCommunicator::world();
  const int n = world->size();
  at::set_num_threads(1);
  if (world->rank() == 0) {
    std::printf("# %d ranks; float32 sum; median of %d; busbw = algbw * 2(n-1)/n\n", n, iterations);
    std::printf("# %12s %12s %10s %10s %12s %10s %12s %10s %9s %9s\n", "bytes", "raw MPI us", "algbw GB/s",
                "busbw GB/s", "ours us", "busbw GB/s", "reducer us", "busbw GB/s", "ours/raw", "red./raw");
  }
  const double bus = n > 1 ? 2.0 * (n - 1) / n : 1.0;
  for (std::size_t bytes = min_bytes; bytes <= max_bytes; bytes *= 4) {
    const auto count = static_cast<std::int64_t>(bytes / 4);
    auto raw_buffer = torch::ones({count});
    auto ours_buffer = torch::ones({count});
    const double raw = time_op(
        [&] {
          MPI_Allreduce(MPI_IN_PLACE, raw_buffer.data_ptr(), static_cast<int>(count), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        },
        iterations);
    const double ours = time_op([&] { world->allreduce(ours_buffer, comm::ReduceOp::kSum); }, iterations);
    // The reducer over parameters of the same total size (64 tensors), gradients all ready:
    // bucketing, launching in order and averaging, against one raw allreduce of the bytes.
    std::vector<torch::Tensor> parameters;
    const auto per = std::max<std::int64_t>(1, count / 64);
    for (std::int64_t left = count; left > 0; left -= per)
      parameters.push_back(torch::zeros({std::min(per, left)}, torch::requires_grad()));
    parallel::ReducerOptions reducer_options;
    reducer_options.bucket_bytes = static_cast<std::size_t>(bucket_mb * (1 << 20));
    reducer_options.loss_is_prescaled = true;  // as the Trainer runs it
    parallel::GradientReducer reducer(world, parameters, reducer_options);
    const double reduced = time_op(
        [&] {
          reducer.prepare_for_backward(true);
          reducer.finalize();
        },
        iterations);
    if (world->rank() == 0)
      std::printf("  %12zu %12.1f %10.3f %10.3f %12.1f %10.3f %12.1f %10.3f %9.3f %9.3f\n", bytes, raw * 1e6,
                  bytes / raw / 1e9, bytes / raw / 1e9 * bus, ours * 1e6, bytes / ours / 1e9 * bus, reduced * 1e6,
                  bytes / reduced / 1e9 * bus, ours / raw, reduced / raw);
  }
  return 0;
}

}  // namespace mpitrain::launcher
