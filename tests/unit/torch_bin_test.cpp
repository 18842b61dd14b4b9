// pytorch_model.bin weights: the fixtures' single and sharded .bin load to transformers' logits and save as its safetensors; anything in a pickle but tensors, and an index naming a missing shard or a path outside the directory, is one error naming the file.
#include <gtest/gtest.h>

#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/pickle.h>

#include <filesystem>

#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/json_file.h"
#include "runtime/checkpoint/npy.h"
#include "runtime/checkpoint/torch_bin.h"
#include "src/models/inputs_json.h"
#include "src/models/pretrained.h"
#include "tests/unit/test_files.h"

namespace mpitrain::models {
namespace {

namespace fs = std::filesystem;
using checkpoint::CheckpointError;

std::string qwen2(const std::string& relative) { return testing::fixture("../hf-families/qwen2/" + relative); }

TEST(TorchBin, SingleAndShardedBinLoadToTransformersLogitsAndSaveItsSafetensors) {
  const auto inputs = read_inputs_json(qwen2("inputs.json"));
  const auto reference = checkpoint::read_npy_float32(qwen2("logits.npy"));
  auto ref = torch::from_blob(const_cast<float*>(reference.data.data()), reference.shape, torch::kFloat32);
  for (const auto& dir : {"bin", "bin-sharded"}) {
    auto loaded = from_pretrained(qwen2(dir));
    loaded.model->eval();
    torch::NoGradGuard no_grad;
    const auto diff = (loaded.model->forward(inputs) - ref).abs() * inputs.attention_mask.unsqueeze(-1).to(torch::kFloat32);
    EXPECT_LT(diff.max().item<double>(), 1e-4) << dir;
    // Saving always writes safetensors: transformers' own file of the same weights.
    testing::ScratchDir out;
    SaveOptions options;
    save_pretrained(*loaded.model, out.path(), options, loaded.generation_config);
    EXPECT_TRUE(testing::read_bytes(out / "model.safetensors") == testing::read_bytes(qwen2("single/model.safetensors")))
        << dir;
    EXPECT_FALSE(fs::exists(out / "pytorch_model.bin"));
  }
}

// A model directory whose weights are the torch.save archive `archive` (records written as given).
std::string bin_directory(const testing::ScratchDir& scratch, const std::function<void(const std::string&)>& write) {
  const auto dir = scratch / "model";
  fs::create_directories(dir);
  fs::copy(qwen2("bin/config.json"), dir + "/config.json");
  write(dir + "/pytorch_model.bin");
  return dir;
}

void write_pickle_archive(const std::string& path, const std::string& pickle) {
  caffe2::serialize::PyTorchStreamWriter writer(path);
  writer.writeRecord("data.pkl", pickle.data(), pickle.size());
  writer.writeEndOfFile();
}

void expect_error(const std::string& dir, const std::string& needle, const std::string& names) {
  try {
    from_pretrained(dir);
    ADD_FAILURE() << "loaded " << dir;
  } catch (const CheckpointError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(needle), std::string::npos) << what;
    EXPECT_NE(what.find(names), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  }
}

TEST(TorchBin, APickleHoldingAnythingButTensorsIsOneErrorNamingTheFile) {
  {  // a value that is not a tensor
    testing::ScratchDir scratch;
    const auto dir = bin_directory(scratch, [](const std::string& path) {
      c10::impl::GenericDict dict(c10::StringType::get(), c10::AnyType::get());
      dict.insert("model.embed_tokens.weight", torch::zeros({256, 64}));
      dict.insert("step", 3);
      const auto bytes = torch::jit::pickle_save(dict);
      testing::write_bytes(path, std::string(bytes.begin(), bytes.end()));
    });
    expect_error(dir, "holds 'step', a Int, not a tensor", "pytorch_model.bin");
  }
  {  // a global LibTorch's unpickler does not know: os.system
    testing::ScratchDir scratch;
    const auto dir = bin_directory(scratch, [](const std::string& path) {
      static const char kPickle[] = "\x80\x02" "cos\nsystem\nq\x00.";
      write_pickle_archive(path, std::string(kPickle, sizeof(kPickle) - 1));
    });
    expect_error(dir, "is not a torch.save file of tensors that LibTorch's restricted unpickler reads", "pytorch_model.bin");
  }
  {  // a top-level OrderedDict, as torch.save(model.state_dict()) writes
    testing::ScratchDir scratch;
    const auto dir = bin_directory(scratch, [](const std::string& path) {
      static const char kPickle[] = "\x80\x02" "ccollections\nOrderedDict\nq\x00)Rq\x01.";
      write_pickle_archive(path, std::string(kPickle, sizeof(kPickle) - 1));
    });
    expect_error(dir, "not a dict of tensors", "pytorch_model.bin");
  }
  {  // a dict of one entry, pickled with SETITEM (Python's way), which LibTorch 1.13 does not know
    testing::ScratchDir scratch;
    const auto dir = bin_directory(scratch, [](const std::string& path) {
      static const char kPickle[] = "\x80\x02}q\x00X\x01\x00\x00\x00" "aK\x01s.";
      write_pickle_archive(path, std::string(kPickle, sizeof(kPickle) - 1));
    });
    expect_error(dir, "is not a torch.save file of tensors", "pytorch_model.bin");
  }
  {  // not an archive at all
    testing::ScratchDir scratch;
    const auto dir = bin_directory(scratch, [](const std::string& path) { testing::write_bytes(path, "not a zip"); });
    expect_error(dir, "is not a torch.save file", "pytorch_model.bin");
  }
}

TEST(TorchBin, AnIndexNamingAMissingShardOrAPathOutsideTheDirectoryIsAnError) {
  testing::ScratchDir scratch;
  const auto dir = scratch / "model";
  fs::copy(qwen2("bin-sharded"), dir);
  fs::remove(dir + "/pytorch_model-00003-of-00004.bin");
  expect_error(dir, "names shard 'pytorch_model-00003-of-00004.bin', which does not exist",
               "pytorch_model.bin.index.json");
  testing::ScratchDir other;
  const auto outside = other / "model";
  fs::copy(qwen2("bin-sharded"), outside);
  auto index = checkpoint::read_json_file(outside + "/pytorch_model.bin.index.json");
  index["weight_map"]["model.norm.weight"] = "../pytorch_model-00004-of-00004.bin";
  checkpoint::write_json_file(outside + "/pytorch_model.bin.index.json", index);
  expect_error(outside, "model.norm.weight", "pytorch_model.bin.index.json");
  // total_size counts the tied embedding's storage once, as transformers writes it; another is refused.
  testing::ScratchDir third;
  const auto sized = third / "model";
  fs::copy(qwen2("bin-sharded"), sized);
  index = checkpoint::read_json_file(sized + "/pytorch_model.bin.index.json");
  index["metadata"]["total_size"] = index["metadata"]["total_size"].get<std::int64_t>() + 4;
  checkpoint::write_json_file(sized + "/pytorch_model.bin.index.json", index);
  expect_error(sized, "metadata.total_size is 362756 but the shards' storages hold 362752 bytes",
               "pytorch_model.bin.index.json");
}

}  // namespace
}  // namespace mpitrain::models
