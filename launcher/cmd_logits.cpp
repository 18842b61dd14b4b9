// `mpitrain logits MODEL_DIR --inputs inputs.json --output logits.npy`: the parity tool against transformers.
#include <iostream>
#include <memory>

#include "launcher/options.h"
#include "runtime/checkpoint/checksums.h"
#include "runtime/checkpoint/npy.h"
#include "src/models/inputs_json.h"
#include "src/models/lora.h"
#include "src/models/pretrained.h"
#include "src/train/memory_check.h"

namespace mpitrain::launcher {

int run_logits(const Args& args) {
  po::options_description options("logits options");
  std::string model_dir, inputs_path, output_path, dtype_name, adapter_dir;
  bool verify = true;
  options.add_options()("model_dir", po::value(&model_dir)->required(), "HF model directory")(
      "inputs", po::value(&inputs_path)->required(), "JSON with input_ids [, attention_mask, token_type_ids]")(
      "output", po::value(&output_path)->required(), "where to write float32 logits (.npy)")(
      "dtype", po::value(&dtype_name)->default_value("float32"), "compute dtype: float32 | bfloat16")(
      "adapter", po::value(&adapter_dir), "a PEFT LoRA adapter directory applied to the model")(
      "verify_checksums", po::value<bool>(&verify)->default_value(true),
      "a training checkpoint's files against its recorded checksums first");
  po::positional_options_description positional;
  positional.add("model_dir", 1);
  po::variables_map values;
  if (!parse_options("logits", "MODEL_DIR --inputs F --output F.npy", args, options, positional, values)) return 0;

  const auto dtype = models::parse_torch_dtype(dtype_name);
  if (verify) checkpoint::verify_if_checkpoint(model_dir);  // a training checkpoint's files as they were saved
  auto loaded = models::from_pretrained(model_dir, dtype);
  for (const auto& name : loaded.ignored_tensors)
    std::cerr << "mpitrain: warning: " << model_dir << ": tensor '" << name << "' is not used by the model\n";
  std::unique_ptr<models::LoraAdapters> adapter;
  if (!adapter_dir.empty()) adapter = models::load_adapter(*loaded.model, adapter_dir);
  const auto vocab = loaded.model->config().value("vocab_size", std::int64_t{0});
  const auto inputs = models::read_inputs_json(inputs_path, vocab);
  // Refused, not run: past its positions a model gives logits it was never trained for
  // (rotary ones run on silently), and a batch larger than memory grows until the kernel stops it.
  const auto rows = inputs.input_ids.size(0), length = inputs.input_ids.size(1);
  const auto positions = loaded.model->position_limit();
  if (length > positions.length)
    throw std::runtime_error(inputs_path + ": rows of " + std::to_string(length) + " tokens exceed the model's " +
                             positions.key + " " + std::to_string(positions.length));
  train::require_inference_fits(loaded.model->config(), model_dir + "/config.json", rows, length, inputs_path);
  loaded.model->eval();
  torch::NoGradGuard no_grad;
  auto logits = loaded.model->forward(inputs).to(torch::kFloat32).contiguous();
  checkpoint::write_npy_float32(output_path, logits.sizes().vec(), logits.data_ptr<float>());
  std::cout << "wrote " << output_path << " " << logits.sizes() << "\n";
  return 0;
}

}  // namespace mpitrain::launcher
