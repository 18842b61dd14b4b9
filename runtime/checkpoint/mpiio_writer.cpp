// Collective MPI-IO writes of a file in rounds: every rank's blocks of a round through a file view of subarrays, so MPI-IO can aggregate strided blocks.
#include "runtime/checkpoint/mpiio_writer.h"

#include <algorithm>
#include <climits>
#include <exception>

#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/save_timing.h"

namespace mpitrain::checkpoint {

namespace {

CheckpointError error_of(int code, const std::string& path, const char* what) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  return CheckpointError(path, std::string(what) + " failed: " + std::string(text, static_cast<std::size_t>(length)));
}

void check(int code, const std::string& path, const char* what) {
  if (code != MPI_SUCCESS) throw error_of(code, path, what);
}

// The block as an MPI subarray of bytes: the last dim counts bytes, so any dtype works.
MPI_Datatype subarray_of(const FileBlock& b) {
  const auto dims = b.coords.empty() ? std::size_t{1} : b.coords.size();
  std::vector<int> sizes(dims, 1), subsizes(dims, 1), starts(dims, 0);
  for (std::size_t d = 0; d < b.coords.size(); ++d) {
    const auto scale = d + 1 == dims ? static_cast<std::int64_t>(b.element_size) : 1;
    sizes[d] = static_cast<int>(b.coords[d] * scale);
    subsizes[d] = static_cast<int>(b.block.sizes[d] * scale);
    starts[d] = static_cast<int>(b.block.offsets[d] * scale);
  }
  if (b.coords.empty()) sizes[0] = subsizes[0] = static_cast<int>(b.element_size);  // a scalar
  MPI_Datatype type;
  MPI_Type_create_subarray(static_cast<int>(dims), sizes.data(), subsizes.data(), starts.data(), MPI_ORDER_C, MPI_BYTE,
                           &type);
  return type;
}

// One round: a view of `blocks` (this rank's, maybe none) and its collective write. Both calls
// are made whatever fails; the first failure is returned as an error, or null.
std::exception_ptr write_round(MPI_File file, const std::string& path, std::vector<FileBlock> blocks) {
  // File views need nondecreasing displacements: tensors in file order.
  std::stable_sort(blocks.begin(), blocks.end(),
                   [](const FileBlock& a, const FileBlock& b) { return a.tensor_offset < b.tensor_offset; });
  blocks.erase(std::remove_if(blocks.begin(), blocks.end(), [](const FileBlock& b) { return b.block.empty(); }),
               blocks.end());
  std::vector<MPI_Datatype> parts;
  std::vector<int> ones(blocks.size(), 1), lengths;
  std::vector<MPI_Aint> file_offsets, addresses;
  for (const auto& b : blocks) {
    parts.push_back(subarray_of(b));
    file_offsets.push_back(static_cast<MPI_Aint>(b.tensor_offset));
    MPI_Aint address;
    MPI_Get_address(b.data, &address);
    addresses.push_back(address);
    lengths.push_back(static_cast<int>(b.block.numel() * static_cast<std::int64_t>(b.element_size)));
    count_bytes_written(static_cast<std::uint64_t>(lengths.back()));
  }
  MPI_Datatype file_type = MPI_BYTE, memory_type = MPI_BYTE;
  int count = 0;
  if (!blocks.empty()) {
    MPI_Type_create_struct(static_cast<int>(blocks.size()), ones.data(), file_offsets.data(), parts.data(), &file_type);
    MPI_Type_commit(&file_type);
    MPI_Type_create_hindexed(static_cast<int>(blocks.size()), lengths.data(), addresses.data(), MPI_BYTE, &memory_type);
    MPI_Type_commit(&memory_type);
    count = 1;
  }
  // A rank whose view failed writes nothing, but still writes.
  const int view = MPI_File_set_view(file, 0, MPI_BYTE, file_type, "native", MPI_INFO_NULL);
  const bool viewed = view == MPI_SUCCESS;
  MPI_Status status;
  const int write = MPI_File_write_all(file, viewed && count ? MPI_BOTTOM : nullptr, viewed ? count : 0,
                                       viewed ? memory_type : MPI_BYTE, &status);
  for (auto& p : parts) MPI_Type_free(&p);
  if (!blocks.empty()) {
    MPI_Type_free(&file_type);
    MPI_Type_free(&memory_type);
  }
  if (!viewed) return std::make_exception_ptr(error_of(view, path, "MPI_File_set_view"));
  if (write != MPI_SUCCESS) return std::make_exception_ptr(error_of(write, path, "MPI-IO write"));
  return nullptr;
}

}  // namespace

bool fits_mpiio(const std::vector<std::int64_t>& coords, const Block& block, std::size_t element_size) {
  const auto limit = static_cast<std::int64_t>(INT_MAX);
  for (auto d : coords)
    if (d * static_cast<std::int64_t>(element_size) >= limit) return false;
  return block.numel() * static_cast<std::int64_t>(element_size) < limit;
}

void write_rounds_collectively(MPI_Comm comm, const std::string& path, int rounds,
                               const std::function<std::vector<FileBlock>(int round)>& blocks_of,
                               const std::function<void(int round)>& written) {
  MPI_File file;
  check(MPI_File_open(comm, path.c_str(), MPI_MODE_WRONLY, MPI_INFO_NULL, &file), path, "MPI_File_open");
  std::exception_ptr first_error;
  for (int round = 0; round < rounds; ++round) {
    std::vector<FileBlock> blocks;
    try {
      if (!first_error) blocks = blocks_of(round);
    } catch (...) {  // this rank takes part in the write with nothing
      first_error = std::current_exception();
      blocks.clear();
    }
    auto error = write_round(file, path, std::move(blocks));
    if (!first_error) first_error = error;
    try {
      written(round);
    } catch (...) {
      if (!first_error) first_error = std::current_exception();
    }
  }
  const int sync = MPI_File_sync(file);
  MPI_File_close(&file);
  if (first_error) std::rethrow_exception(first_error);
  check(sync, path, "MPI_File_sync");
}

}  // namespace mpitrain::checkpoint
