// save_mode gather: the writers' blocks stream to rank 0 in bounded windows, and rank 0 writes each at its planned offset.
#include "runtime/checkpoint/gather_writer.h"

#include <functional>
#include <future>

#include "runtime/checkpoint/planned_files.h"
#include "runtime/comm/agreement.h"

namespace mpitrain::checkpoint {

namespace {

constexpr int kTag = 4242;

// One walk of the plan by one rank, collecting its first failure instead of stopping: every
// send is still received and every window still sent (an empty message, which a receive of
// any length accepts; nothing of it is committed), so no rank waits for one that left.
class GatherWalk {
 public:
  GatherWalk(comm::Communicator& comm, const std::string& dir, const SaveBlocks& blocks, HostStaging& staged,
             const SavePlan& plan, OpenFiles* files, torch::Tensor* buffers, std::uint64_t window)
      : comm_(comm), dir_(dir), blocks_(blocks), staged_(staged), plan_(plan), files_(files), buffers_(buffers),
        window_(window) {}

  void run() {
    const auto& tensors = blocks_.tensors();
    for (std::size_t i = 0; i < tensors.size(); ++i)
      for (const auto& rb : blocks_.of(i))
        if (rb.writer && !rb.block.empty()) move_block(i, rb);
    finish_writing();
    if (error_) std::rethrow_exception(error_);
    if (files_) files_->sync_all();
  }

 private:
  void attempt(const std::function<void()>& step) {
    if (error_) return;
    try {
      step();
    } catch (...) {
      error_ = std::current_exception();
    }
  }
  const torch::Tensor* block_or_error(std::size_t i) {
    const torch::Tensor* data = nullptr;
    attempt([&] { data = &staged_block(blocks_, staged_, i); });
    return data;
  }
  void finish_writing() {
    if (writing_.valid()) attempt([&] { writing_.get(); });  // the other buffer is free again
  }

  // Block `rb` of tensor i: written by rank 0 where it holds it, else sent by its writer and
  // received by rank 0 window by window.
  void move_block(std::size_t i, const RankBlock& rb) {
    const auto& planned = plan_.tensors[i];
    const auto& coords = blocks_.tensors()[i].layout.coords();
    const std::uint64_t bytes = static_cast<std::uint64_t>(rb.block.numel()) * dtype_size(planned.spec.dtype);
    const auto path = temp_name(dir_, plan_.files[planned.file].name);
    if (rb.rank == 0 && comm_.rank() == 0) {
      if (const auto* data = block_or_error(i))
        attempt([&] {
          write_packed_range(files_->fd(planned.file), path, planned, coords, rb.block,
                             static_cast<const std::uint8_t*>(data->data_ptr()), 0, 0, bytes);
        });
      staged_.release(i);
      return;
    }
    if (comm_.rank() != 0 && comm_.rank() != rb.rank) return;
    const torch::Tensor* data = comm_.rank() == rb.rank ? block_or_error(i) : nullptr;
    for (std::uint64_t begin = 0; begin < bytes; begin += window_) {
      const auto length = std::min(window_, bytes - begin);
      if (comm_.rank() == rb.rank) {
        comm_.send(data ? torch::from_blob(static_cast<std::uint8_t*>(data->data_ptr()) + begin,
                                           {static_cast<std::int64_t>(length)}, torch::kUInt8)
                        : torch::empty({0}, torch::kUInt8),
                   0, kTag);
        continue;
      }
      auto chunk = buffers_[next_].narrow(0, 0, static_cast<std::int64_t>(length));
      comm_.recv(chunk, rb.rank, kTag);
      finish_writing();
      if (error_) continue;  // received and dropped
      writing_ = std::async(std::launch::async, [files = files_, &planned, &coords, path, block = rb.block, chunk, begin,
                                                 length] {
        write_packed_range(files->fd(planned.file), path, planned, coords, block, chunk.data_ptr<std::uint8_t>(), begin,
                           begin, begin + length);
      });
      next_ ^= 1;
    }
    if (comm_.rank() == rb.rank) staged_.release(i);
  }

  comm::Communicator& comm_;
  const std::string& dir_;
  const SaveBlocks& blocks_;
  HostStaging& staged_;
  const SavePlan& plan_;
  OpenFiles* files_;  // rank 0's
  torch::Tensor* buffers_;  // rank 0's two receive windows
  std::uint64_t window_;
  std::exception_ptr error_;
  std::future<void> writing_;  // the write of the other buffer, in flight
  int next_ = 0;
};

}  // namespace

void save_gather(comm::Communicator& comm, const std::string& dir, const SaveBlocks& blocks, HostStaging& staged,
                 const SavePlan& plan, std::uint64_t window) {
  write_planned_files(comm, dir, plan, [&] {
    // Rank 0's files and two receive windows, agreed before any window is sent: once the sends
    // begin, rank 0 must receive them all.
    std::unique_ptr<OpenFiles> files;
    torch::Tensor buffers[2];
    comm::run_agreed(comm, [&] {
      if (comm.rank() != 0) return;
      files = std::make_unique<OpenFiles>(dir, plan);
      for (auto& b : buffers) b = torch::empty({static_cast<std::int64_t>(window)}, torch::kUInt8);
    });
    // Every rank walks the same plan in the same order: tensor by tensor, writer block by
    // writer block, window by window; a failure is raised at the end, agreed.
    comm::run_agreed(comm, [&] { GatherWalk(comm, dir, blocks, staged, plan, files.get(), buffers, window).run(); });
    files.reset();  // closed before the renames
  });
}

}  // namespace mpitrain::checkpoint
