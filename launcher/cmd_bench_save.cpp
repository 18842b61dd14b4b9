// `mpitrain bench save` (under mpirun): the collective save of a sharded ~1 GB model against a raw parallel write, and its resharded load against a raw read, of the same bytes.
#include <fcntl.h>
#include <malloc.h>
#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "launcher/bench_stats.h"
#include "launcher/options.h"
#include "runtime/checkpoint/checkpoint_reader.h"
#include "runtime/checkpoint/distributed_save.h"
#include "runtime/checkpoint/remove_tree.h"
#include "runtime/checkpoint/torch_tensors.h"
#include "runtime/comm/launch.h"
#include "runtime/comm/mpi_communicator.h"
#include "runtime/device/device.h"
#include "runtime/device/process_memory.h"
#include "src/models/pretrained.h"

namespace mpitrain::launcher {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;


// The slowest rank's seconds for `op`, started together.
template <typename F>
double timed(comm::Communicator& world, F&& op) {
  world.barrier();
  const auto start = Clock::now();
  op();
  auto t = torch::tensor({std::chrono::duration<double>(Clock::now() - start).count()}, torch::kFloat64);
  world.allreduce(t, comm::ReduceOp::kMax);
  return t.item<double>();
}

}  // namespace

int run_bench_save(const Args& args) {
  po::options_description options("bench save options");
  std::size_t size_mb = 1024, tensor_mb = 16;
  double window_mb = 64;
  int repeats = 4;
  std::string dir = "bench-save-tmp", mode_name = "parallel", io = "auto", device_name = "cpu", save_dtype_name = "float32";
  int split_dim = 0;
  options.add_options()("size_mb", po::value(&size_mb)->default_value(size_mb), "model size in MiB")(
      "tensor_mb", po::value(&tensor_mb)->default_value(tensor_mb), "size of each tensor in MiB")(
      "repeats", po::value(&repeats)->default_value(repeats), "runs (even: the order alternates)")(
      "mode", po::value(&mode_name)->default_value(mode_name), "gather | parallel | sharded")(
      "io", po::value(&io)->default_value(io), "parallel mode: auto | mpiio | posix")(
      "split_dim", po::value(&split_dim)->default_value(split_dim),
      "tensors of 4096 columns held by rows (0: contiguous in the file) or columns (1: strided, as row-parallel TP); "
      "the load reads them back split along the other dim")(
      "window_mb", po::value(&window_mb)->default_value(window_mb), "gather mode: rank 0's receive window")(
      "dir", po::value(&dir)->default_value(dir), "scratch directory on the file system to measure")(
      "device", po::value(&device_name)->default_value(device_name),
      "cpu | cuda: where the saved tensors live (cuda: staged to the host while writing; the raw write starts from "
      "host memory)")(
      "save_dtype", po::value(&save_dtype_name)->default_value(save_dtype_name),
      "float32 | bfloat16 | float16: the dtype written (the tensors are float32; the save converts block by block, "
      "measured beside converting every block up front)");
  po::variables_map values;
  if (!parse_options("bench save", "[options] (under mpirun)", args, options, {}, values)) return 0;
  if (repeats < 2 || repeats % 2) throw UsageError("bench save: repeats must be an even number >= 2");
  if (split_dim != 0 && split_dim != 1) throw UsageError("bench save: --split_dim must be 0 or 1");

  // Freed blocks go back to the system at once (glibc would otherwise raise its mmap threshold
  // after the first free and keep later ones resident): the RSS growths below are live memory.
  ::mallopt(M_MMAP_THRESHOLD, 1 << 20);
  comm::MpiSession mpi(nullptr, nullptr);
  auto world = comm::MpiCommunicator::world();
  const int n = world->size(), rank = world->rank();
  at::Device device = at::kCPU;
  at::ScalarType save_dtype = at::kFloat;
  try {
    device = device::select_device(device_name, comm::detect_launch().local_rank, "--device");
    save_dtype = models::parse_torch_dtype(save_dtype_name);
  } catch (const std::exception& e) {
    throw UsageError(std::string("bench save: ") + e.what());
  }
  const bool converts = save_dtype != at::kFloat;
  // Every tensor is split over the ranks (as TP or ZeRO leave it): each rank holds and writes
  // 1/n of the model, along dim 0 (one contiguous run in the file) or dim 1 (one run per row).
  const auto elements = static_cast<std::int64_t>((tensor_mb << 20) / 4);
  const auto count = std::max<std::size_t>(1, size_mb / tensor_mb);
  const std::int64_t columns = 4096, rows = elements / columns;
  // This rank's share of `length` (offset, size).
  const auto share = [&](std::int64_t length) {
    const auto base = length / n, extra = length % n;
    return std::pair<std::int64_t, std::int64_t>{rank * base + std::min<std::int64_t>(rank, extra),
                                                 base + (rank < extra ? 1 : 0)};
  };
  const auto [offset, size] = share(split_dim == 1 ? columns : rows);
  // The resharded load: each rank reads the blocks split along the other dim.
  const auto [load_offset, load_size] = share(split_dim == 1 ? rows : columns);
  const checkpoint::Block load_block = split_dim == 1 ? checkpoint::Block{{load_offset, 0}, {load_size, columns}}
                                                      : checkpoint::Block{{0, load_offset}, {rows, load_size}};
  std::vector<checkpoint::LocalTensor> tensors;
  std::vector<torch::Tensor> host_data;  // what the raw write writes: the same bytes, in host memory
  std::uint64_t my_bytes = 0;
  for (std::size_t i = 0; i < count; ++i) {
    checkpoint::LocalTensor t;
    t.layout.name = "layers." + std::to_string(i) + ".weight";
    t.layout.shape = {rows, columns};
    t.layout.dtype = checkpoint::from_scalar_type(save_dtype);
    t.layout.block = split_dim == 1 ? checkpoint::Block{{0, offset}, {rows, size}} : checkpoint::Block{{offset, 0}, {size, columns}};
    const auto values = torch::rand(t.layout.block.sizes);
    t.data = values.to(device);
    host_data.push_back(values.to(save_dtype));
    my_bytes += host_data.back().nbytes();
    tensors.push_back(std::move(t));
  }
  const auto element = static_cast<double>(c10::elementSize(save_dtype));
  const double total_gb = static_cast<double>(count) * static_cast<double>(rows * columns) * element / 1e9;
  checkpoint::DistributedSaveOptions save;
  save.mode = checkpoint::parse_save_mode(mode_name);
  save.gather_window_bytes = static_cast<std::uint64_t>(window_mb * (1 << 20));
  try {
    save.io = checkpoint::parse_save_io(io);
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("bench save: ") + e.what());
  }
  const fs::path root(dir);
  if (rank == 0) fs::create_directories(root);

  auto raw = [&] {
    // The same bytes, each rank writing its contiguous share of one file, then fsync.
    const auto path = (root / "raw.bin").string();
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT, 0644);
    std::uint64_t offset = static_cast<std::uint64_t>(rank) * my_bytes;
    for (const auto& data : host_data) {
      const auto* p = static_cast<const char*>(data.data_ptr());
      std::uint64_t left = data.nbytes();
      while (left > 0) {
        const auto w = ::pwrite(fd, p, left, static_cast<off_t>(offset));
        if (w <= 0) break;
        p += w;
        left -= static_cast<std::uint64_t>(w);
        offset += static_cast<std::uint64_t>(w);
      }
    }
    ::fsync(fd);
    ::close(fd);
  };
  // Rank 0's resident-set growth during each save, beyond what it held before (its own share).
  std::vector<double> rank0_growth, up_front_growth, up_front_t;
  std::uint64_t rank0_staged_peak = 0;  // host copies (GPU blocks, conversions) held at once
  // Records the resident-set growth while `save_fn` runs.
  const auto recording_growth = [&](std::vector<double>& growth, const std::function<void()>& save_fn) {
    const auto before = device::resident_bytes();
    device::reset_peak_resident();
    save_fn();
    growth.push_back(static_cast<double>(device::peak_resident_bytes()) - static_cast<double>(before));
  };
  auto ours = [&] {
    recording_growth(rank0_growth, [&] {
      const auto stats = checkpoint::save_distributed(*world, (root / "save").string(), tensors, save);
      rank0_staged_peak = std::max(rank0_staged_peak, stats.peak_host_copy_bytes);
    });
  };
  // The baseline for a converting save: every block converted before the save starts.
  auto up_front = [&] {
    recording_growth(up_front_growth, [&] {
      auto converted = tensors;
      for (auto& t : converted) t.data = t.data.to(save_dtype);
      checkpoint::save_distributed(*world, (root / "save").string(), converted, save);
    });
  };
  // Reading back: every page evicted first, so both reads come from the disk.
  auto evict = [&] {
    world->barrier();
    if (rank == 0)
      for (const auto& item : fs::recursive_directory_iterator(root)) {
        if (!item.is_regular_file()) continue;
        const int fd = ::open(item.path().c_str(), O_RDONLY);
        if (fd < 0) continue;
        ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        ::close(fd);
      }
    world->barrier();
  };
  const auto load_bytes = static_cast<std::uint64_t>(load_block.numel()) * c10::elementSize(save_dtype) * count;
  auto raw_read = [&] {
    // The same number of bytes, this rank's contiguous share of the raw file, into fresh
    // memory as a load must (the loaded tensors are new allocations too).
    const int fd = ::open((root / "raw.bin").c_str(), O_RDONLY);
    std::unique_ptr<char[]> memory(new char[load_bytes]);
    std::uint64_t at = static_cast<std::uint64_t>(rank) * load_bytes, done = 0;
    while (done < load_bytes) {
      const auto got = ::pread(fd, memory.get() + done, std::min<std::uint64_t>(load_bytes - done, 16u << 20),
                               static_cast<off_t>(at + done));
      if (got <= 0) break;
      done += static_cast<std::uint64_t>(got);
    }
    ::close(fd);
  };
  auto ours_read = [&] {
    checkpoint::CheckpointReader reader((root / "save").string());
    for (const auto& t : tensors) reader.read(t.layout.name, load_block);
  };
  auto clean = [&](bool keep_raw = false) {
    world->barrier();
    if (rank == 0) {
      if (!keep_raw) fs::remove(root / "raw.bin");
      checkpoint::remove_tree(root / "save");
      ::sync();  // freeing the last run's blocks happens outside the timings
    }
    world->barrier();
  };
  std::vector<double> raw_t, ours_t, ratios, raw_read_t, load_t, load_ratios;
  for (int r = 0; r < repeats; ++r) {
    clean();
    // The up-front baseline alternates too: first in even runs, after the save in odd ones.
    if (converts && r % 2 == 0) {
      up_front_t.push_back(timed(*world, up_front));
      clean();
    }
    if (r % 2) ours_t.push_back(timed(*world, ours));
    raw_t.push_back(timed(*world, raw));
    if (r % 2 == 0) ours_t.push_back(timed(*world, ours));
    if (r % 2) ratios.push_back((raw_t[r - 1] + raw_t[r]) / (ours_t[r - 1] + ours_t[r]));
    if (converts && r % 2) {
      clean(/*keep_raw=*/true);  // raw.bin is read below
      up_front_t.push_back(timed(*world, up_front));
    }
    evict();
    raw_read_t.push_back(timed(*world, raw_read));
    evict();
    load_t.push_back(timed(*world, ours_read));
    load_ratios.push_back(raw_read_t.back() / load_t.back());
  }
  clean();
  if (rank == 0) {
    checkpoint::remove_tree(root);
    std::printf("bench save: %zu tensors, %.3f GB written as %s, %d ranks, mode %s (io %s), tensors on %s, %d runs\n",
                count, total_gb, save_dtype_name.c_str(), n, mode_name.c_str(), io.c_str(), device.str().c_str(),
                repeats);
    std::printf("  raw parallel write+fsync  %.3f GB/s\n", total_gb / median(raw_t));
    std::printf("  save (%s)%*s %.3f GB/s\n", mode_name.c_str(), static_cast<int>(15 - mode_name.size()), "",
                total_gb / median(ours_t));
    std::printf("  ratio (save/raw throughput, median over run pairs) %.3f\n", median(ratios));
    const double load_gb = static_cast<double>(load_bytes) * n / 1e9;
    std::printf("  raw parallel read         %.3f GB/s\n", load_gb / median(raw_read_t));
    std::printf("  load, resharded along dim %d %.3f GB/s (each rank's blocks come from every saved block)\n",
                1 - split_dim, load_gb / median(load_t));
    std::printf("  ratio (load/raw read throughput, median) %.3f\n", median(load_ratios));
    std::printf("  rank 0 peak RSS growth during the save %.1f MB (its own share %.1f MB; gather window %.0f MB; "
                "staged host copies at most %.1f MB)\n",
                median(rank0_growth) / 1e6, static_cast<double>(my_bytes) / 1e6, window_mb,
                static_cast<double>(rank0_staged_peak) / 1e6);
    if (converts)
      std::printf("  converting every block up front instead: %.3f GB/s, rank 0 peak RSS growth %.1f MB\n",
                  total_gb / median(up_front_t), median(up_front_growth) / 1e6);
  }
  return 0;
}

}  // namespace mpitrain::launcher
