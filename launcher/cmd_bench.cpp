// `mpitrain bench io`: safetensors save/load throughput as a ratio against raw write+fsync and read of the same bytes.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <random>

#include "launcher/bench_stats.h"
#include "launcher/options.h"
#include "runtime/checkpoint/hf_index.h"
#include "runtime/checkpoint/hf_weights.h"
#include "runtime/checkpoint/remove_tree.h"
#include "runtime/checkpoint/xxhash64.h"

namespace mpitrain::launcher {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Drops a file's pages from the page cache so that the next read comes from the disk, for
// the raw baseline and the safetensors reader alike.
void evict_from_cache(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return;
  ::fdatasync(fd);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

void evict_directory(const fs::path& dir) {
  for (const auto& item : fs::directory_iterator(dir))
    if (item.is_regular_file()) evict_from_cache(item.path());
}

double raw_write(const fs::path& path, const std::vector<std::vector<char>>& buffers) {
  const auto start = Clock::now();
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) throw std::runtime_error(path.string() + ": cannot create");
  for (const auto& b : buffers) {
    std::size_t done = 0;
    while (done < b.size()) {
      auto n = ::write(fd, b.data() + done, b.size() - done);
      if (n < 0) throw std::runtime_error(path.string() + ": write failed");
      done += static_cast<std::size_t>(n);
    }
  }
  ::fsync(fd);
  ::close(fd);
  return seconds_since(start);
}

double raw_read(const fs::path& path, std::vector<std::vector<char>>& buffers) {
  const auto start = Clock::now();
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw std::runtime_error(path.string() + ": cannot open");
  for (auto& b : buffers) {
    std::size_t done = 0;
    while (done < b.size()) {
      auto n = ::read(fd, b.data() + done, b.size() - done);
      if (n <= 0) throw std::runtime_error(path.string() + ": short read");
      done += static_cast<std::size_t>(n);
    }
  }
  ::close(fd);
  return seconds_since(start);
}


}  // namespace

int run_bench_io(const Args& args) {
  po::options_description options("bench io options");
  std::size_t size_mb = 1024, tensor_mb = 16;
  int repeats = 6;
  std::string dir = "bench-io-tmp", max_shard_size = "5GB";
  options.add_options()("size_mb", po::value(&size_mb)->default_value(size_mb), "total bytes to save, in MiB")(
      "tensor_mb", po::value(&tensor_mb)->default_value(tensor_mb), "size of each tensor, in MiB")(
      "repeats", po::value(&repeats)->default_value(repeats), "runs (even: the write order alternates); medians are reported")(
      "dir", po::value(&dir)->default_value(dir), "scratch directory (removed afterwards)")(
      "max_shard_size", po::value(&max_shard_size)->default_value(max_shard_size), "HF shard size limit");
  po::variables_map values;
  if (!parse_options("bench io", "[options]", args, options, {}, values)) return 0;
  if (size_mb == 0 || tensor_mb == 0 || repeats < 2 || repeats % 2)
    throw UsageError("bench io: sizes must be positive and repeats an even number >= 2");
  const auto shard_limit = checkpoint::parse_shard_size(max_shard_size);

  // Random bytes, so no layer below can compress them away.
  const std::size_t tensor_bytes = tensor_mb << 20;
  const std::size_t count = std::max<std::size_t>(1, size_mb / tensor_mb);
  std::vector<std::vector<char>> buffers(count, std::vector<char>(tensor_bytes));
  std::mt19937_64 rng(42);
  for (auto& b : buffers)
    for (std::size_t i = 0; i + 8 <= b.size(); i += 8) {
      const auto v = rng();
      std::memcpy(b.data() + i, &v, 8);
    }
  std::vector<checkpoint::TensorBytes> tensors;
  for (std::size_t i = 0; i < count; ++i)
    tensors.push_back({{"layers." + std::to_string(i) + ".weight", checkpoint::DType::U8,
                        {static_cast<std::int64_t>(tensor_bytes)}},
                       buffers[i].data()});
  const double total_gb = static_cast<double>(count * tensor_bytes) / 1e9;

  const fs::path root(dir);
  fs::create_directories(root / "safetensors");
  std::vector<std::vector<char>> sink(count, std::vector<char>(tensor_bytes));
  std::vector<double> write_ratio, read_ratio, raw_w, st_w, raw_r, st_r, hash_cold, hash_warm;
  // Checksums: a resume verifies files that are cold (one more read of the bytes); a save
  // hashes files it has just written (still in the page cache).
  auto hash_files = [&] {
    const auto start = Clock::now();
    for (const auto& item : fs::directory_iterator(root / "safetensors")) checkpoint::file_xxh64(item.path().string());
    return seconds_since(start);
  };
  for (int r = 0; r < repeats; ++r) {
    // Both writes go to new files: freeing the previous run's blocks (and any discard the
    // file system does for them) happens here, outside the timings.
    fs::remove(root / "raw.bin");
    checkpoint::remove_tree(root / "safetensors");
    ::sync();
    // Alternate which write goes first so that neither always meets a busier disk.
    auto save = [&] {
      const auto start = Clock::now();
      checkpoint::save_hf_weights((root / "safetensors").string(), tensors, shard_limit);
      st_w.push_back(seconds_since(start));
    };
    // Measured here: on this virtual disk the second of two back-to-back 1 GB writes is
    // often throttled (10x slower page-cache writes), whichever writer it is, and a pause
    // does not make it fair either. So the order alternates between runs and the ratio is
    // taken over the pair totals, where the order effect cancels.
    if (r % 2) save();
    raw_w.push_back(raw_write(root / "raw.bin", buffers));
    if (r % 2 == 0) save();

    evict_from_cache(root / "raw.bin");
    evict_directory(root / "safetensors");
    raw_r.push_back(raw_read(root / "raw.bin", sink));
    const auto start = Clock::now();
    {
      auto weights = checkpoint::HfWeights::open((root / "safetensors").string());
      for (std::size_t i = 0; i < count; ++i) {
        const auto& name = tensors[i].spec.name;
        const auto& file = weights.file_of(name);
        const auto& entry = file.entry(name);
        file.read_into(entry, sink[i].data());
      }
    }
    st_r.push_back(seconds_since(start));
    read_ratio.push_back(raw_r.back() / st_r.back());
    evict_directory(root / "safetensors");
    hash_cold.push_back(hash_files());
    hash_warm.push_back(hash_files());
    if (r % 2) write_ratio.push_back((raw_w[r - 1] + raw_w[r]) / (st_w[r - 1] + st_w[r]));
  }
  checkpoint::remove_tree(root);

  std::cout << std::fixed << std::setprecision(3);
  std::cout << "bench io: " << count << " tensors x " << tensor_mb << " MiB = " << total_gb << " GB, " << repeats
            << " runs, median\n";
  std::cout << "  raw write+fsync      " << total_gb / median(raw_w) << " GB/s\n";
  std::cout << "  safetensors save     " << total_gb / median(st_w) << " GB/s\n";
  std::cout << "  raw read (cold)      " << total_gb / median(raw_r) << " GB/s\n";
  std::cout << "  safetensors load     " << total_gb / median(st_r) << " GB/s\n";
  std::cout << "  write ratio (safetensors/raw throughput, median over run pairs) " << median(write_ratio) << "\n";
  std::cout << "  read ratio  (safetensors/raw throughput, median over runs)      " << median(read_ratio) << "\n";
  std::cout << "  xxh64 of the files, cold (a resume's verification) " << total_gb / median(hash_cold)
            << " GB/s = " << median(hash_cold) / median(raw_r) << " x the raw read time\n";
  std::cout << "  xxh64 of the files, warm (after a save)             " << total_gb / median(hash_warm)
            << " GB/s = " << median(hash_warm) / median(st_w) << " x the save time\n";
  return 0;
}

int run_bench(const Args& args) {
  if (!args.empty() && args[0] == "io") return run_bench_io(Args(args.begin() + 1, args.end()));
  if (!args.empty() && args[0] == "allreduce") return run_bench_allreduce(Args(args.begin() + 1, args.end()));
  if (!args.empty() && args[0] == "save") return run_bench_save(Args(args.begin() + 1, args.end()));
  if (!args.empty() && args[0] == "tokenize") return run_bench_tokenize(Args(args.begin() + 1, args.end()));
  throw UsageError("bench: expected a benchmark name: io | allreduce | save | tokenize");
}

}  // namespace mpitrain::launcher
