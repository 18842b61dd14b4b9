// Hugging Face's legacy weights, pytorch_model.bin (one file, or shards and pytorch_model.bin.index.json): read by LibTorch's own restricted unpickler and served as in-memory safetensors.
#include "runtime/checkpoint/torch_bin.h"

#include <caffe2/serialize/inline_container.h>
#include <caffe2/serialize/read_adapter_interface.h>
#include <sys/stat.h>
#include <torch/csrc/jit/serialization/import_read.h>
#include <torch/csrc/jit/serialization/storage_context.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/hf_index.h"
#include "runtime/checkpoint/input_file.h"
#include "runtime/checkpoint/torch_tensors.h"

namespace mpitrain::checkpoint {

namespace fs = std::filesystem;

namespace {

// The zip reader's view of a regular file, by positioned reads (the file is opened as every
// input is: a FIFO in its place is an error, not a hang).
class RegularFileAdapter final : public caffe2::serialize::ReadAdapterInterface {
 public:
  explicit RegularFileAdapter(const std::string& path) : path_(path), fd_(open_regular_file(path)) {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) {
      ::close(fd_);
      throw CheckpointError(path, std::string("cannot stat: ") + std::strerror(errno));
    }
    size_ = static_cast<std::size_t>(st.st_size);
  }
  ~RegularFileAdapter() override { ::close(fd_); }
  std::size_t size() const override { return size_; }
  std::size_t read(std::uint64_t pos, void* buf, std::size_t n, const char* /*what*/) const override {
    std::size_t done = 0;
    while (done < n) {
      const auto got = ::pread(fd_, static_cast<char*>(buf) + done, n - done, static_cast<off_t>(pos + done));
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) break;
      done += static_cast<std::size_t>(got);
    }
    return done;
  }

 private:
  std::string path_;
  int fd_;
  std::size_t size_ = 0;
};

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

c10::IValue unpickle(const std::string& path) {
  try {
    caffe2::serialize::PyTorchStreamReader reader(std::make_shared<RegularFileAdapter>(path));
    // Every tensor to the CPU, wherever it was saved from: a GPU-saved file on a CPU build too.
    // The storage context makes tensors saved on one storage (tied weights) share it here too.
    return torch::jit::readArchiveAndTensors("data", "", "", c10::nullopt, c10::nullopt, at::Device(at::kCPU), reader,
                                             torch::jit::Unpickler::defaultTypeParser,
                                             std::make_shared<torch::jit::DeserializationStorageContext>());
  } catch (const c10::Error& e) {
    throw CheckpointError(path, "is not a torch.save file of tensors that LibTorch's restricted unpickler reads (" +
                                    first_line(e.what_without_backtrace()) + ")");
  }
}

}  // namespace

ConvertedBin torch_bin_as_safetensors(const std::string& path) {
  const auto value = unpickle(path);
  if (!value.isGenericDict())
    throw CheckpointError(path, "holds a pickled " + std::string(value.tagKind()) +
                                    ", not a dict of tensors (LibTorch reads a top-level OrderedDict, as "
                                    "torch.save(model.state_dict()) writes it, as None: convert it with transformers)");
  std::vector<TensorSpec> specs;
  std::map<std::string, torch::Tensor> tensors;
  std::map<const void*, std::uint64_t> storages;  // each storage's bytes, once
  for (const auto& item : value.toGenericDict()) {
    if (!item.key().isString()) throw CheckpointError(path, "holds a key that is not a tensor name");
    const auto name = item.key().toStringRef();
    if (!item.value().isTensor())
      throw CheckpointError(path, "holds '" + name + "', a " + std::string(item.value().tagKind()) + ", not a tensor");
    const auto& stored = item.value().toTensor();
    storages[stored.storage().data()] = stored.storage().nbytes();
    auto tensor = stored.contiguous();
    specs.push_back({name, from_scalar_type(tensor.scalar_type()), tensor.sizes().vec()});
    tensors[name] = std::move(tensor);
  }
  const auto plan = plan_safetensors(specs);
  ConvertedBin converted;
  auto& bytes = converted.safetensors;
  bytes.resize(plan.file_size);
  std::memcpy(bytes.data(), plan.preamble.data(), plan.preamble.size());
  for (const auto& entry : plan.tensors)
    std::memcpy(bytes.data() + plan.data_start() + entry.begin, tensors.at(entry.name).data_ptr(), entry.nbytes());
  for (const auto& [storage, size] : storages) converted.storage_bytes += size;
  return converted;
}

HfWeights open_model_weights(const std::string& path) {
  const fs::path dir(path);
  const auto single = dir / "pytorch_model.bin", index_path = dir / "pytorch_model.bin.index.json";
  const bool safetensors = fs::exists(dir / kSingleWeightsFile) || fs::exists(dir / kWeightsIndexFile);
  if (!fs::is_directory(dir) || safetensors || (!fs::exists(single) && !fs::exists(index_path)))
    return HfWeights::open(path);  // it names what is missing
  std::map<std::string, std::unique_ptr<SafetensorsFile>> files;
  if (fs::exists(single)) {
    files["pytorch_model.bin"] =
        std::make_unique<SafetensorsFile>(single.string(), torch_bin_as_safetensors(single).safetensors);
    return HfWeights::from_files(path, std::move(files), nullptr, "");
  }
  auto index = parse_shard_index(read_regular_file(index_path.string()), index_path.string());
  std::uint64_t stored = 0;
  for (const auto& shard : index.shard_files()) {
    const auto shard_path = dir / shard;
    if (!fs::exists(shard_path))
      throw CheckpointError(index_path.string(), "names shard '" + shard + "', which does not exist");
    auto converted = torch_bin_as_safetensors(shard_path);
    stored += converted.storage_bytes;
    files[shard] = std::make_unique<SafetensorsFile>(shard_path.string(), std::move(converted.safetensors));
  }
  // transformers counts a storage shared by tied tensors once (4.42 on); older versions summed
  // every tensor's bytes. Either is accepted.
  std::uint64_t per_tensor = 0;
  for (const auto& [name, file] : files)
    for (const auto& t : file->header().tensors) per_tensor += t.nbytes();
  if (index.has_total_size && index.total_size != stored && index.total_size != per_tensor)
    throw CheckpointError(index_path.string(), "metadata.total_size is " + std::to_string(index.total_size) +
                                                   " but the shards' storages hold " + std::to_string(stored) + " bytes");
  index.has_total_size = false;
  return HfWeights::from_files(path, std::move(files), &index, index_path.string());
}

}  // namespace mpitrain::checkpoint
