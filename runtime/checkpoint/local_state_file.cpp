// One rank's state as a safetensors file in node-local memory: laid out in a reused host buffer at the step boundary, then written through a read-write mapping in the background.
#include "runtime/checkpoint/local_state_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>

#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/safetensors_header.h"
#include "runtime/checkpoint/torch_tensors.h"

namespace mpitrain::checkpoint {

MappedFile::MappedFile(std::string path, std::uint64_t size, int fd, std::uint8_t* data)
    : path_(std::move(path)), size_(size), fd_(fd), data_(data) {}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(data_, size_);
  if (fd_ >= 0) ::close(fd_);
}

std::unique_ptr<MappedFile> MappedFile::create(const std::string& path, std::uint64_t size) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw CheckpointError(path, std::string("cannot create: ") + std::strerror(errno));
  const auto fail = [&](const char* what, int error) {
    ::close(fd);
    ::unlink(path.c_str());
    throw CheckpointError(path, std::string(what) + " " + std::to_string(size) + " bytes: " + std::strerror(error));
  };
  if (size == 0) return std::unique_ptr<MappedFile>(new MappedFile(path, 0, fd, nullptr));
  if (const int error = ::posix_fallocate(fd, 0, static_cast<off_t>(size)); error != 0) fail("cannot reserve", error);
  void* mapped = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (mapped == MAP_FAILED) fail("cannot map", errno);
  return std::unique_ptr<MappedFile>(new MappedFile(path, size, fd, static_cast<std::uint8_t*>(mapped)));
}

torch::Tensor MappedFile::bytes(std::uint64_t begin, std::uint64_t end) const {
  if (begin > end || end > size_) throw std::out_of_range(path_ + ": bytes beyond the file");
  if (begin == end) return torch::empty({0}, torch::kUInt8);
  return torch::from_blob(data_ + begin, {static_cast<std::int64_t>(end - begin)}, torch::kUInt8);
}

namespace {

SafetensorsPlan plan_state(const std::vector<NamedTensor>& tensors, const std::map<std::string, std::string>& metadata) {
  std::vector<TensorSpec> specs;
  std::set<std::string> names;
  for (const auto& t : tensors) {
    if (!names.insert(t.name).second) throw std::invalid_argument("local state: tensor '" + t.name + "' twice");
    specs.push_back({t.name, from_scalar_type(t.tensor.scalar_type()), t.tensor.sizes().vec()});
  }
  return plan_safetensors(std::move(specs), metadata);
}

}  // namespace

std::uint64_t fill_state_buffer(std::vector<std::uint8_t>& buffer, const std::vector<NamedTensor>& tensors,
                                const std::map<std::string, std::string>& metadata) {
  const auto plan = plan_state(tensors, metadata);
  if (buffer.size() < plan.file_size) buffer.resize(plan.file_size);
  std::memcpy(buffer.data(), plan.preamble.data(), plan.preamble.size());
  std::map<std::string, const torch::Tensor*> by_name;
  for (const auto& t : tensors) by_name[t.name] = &t.tensor;
  const torch::NoGradGuard no_grad;
  for (const auto& entry : plan.tensors) {
    const auto& source = *by_name.at(entry.name);
    if (entry.nbytes() == 0) continue;
    auto target = torch::from_blob(buffer.data() + plan.data_start() + entry.begin, source.sizes(),
                                   torch::TensorOptions().dtype(source.scalar_type()));
    target.copy_(source.detach());  // a device tensor comes to the host here, in one copy
  }
  return plan.file_size;
}

}  // namespace mpitrain::checkpoint
