// The building blocks of the three architectures, with HF parameter names (weight, bias).
#pragma once

#include <torch/torch.h>

#include <string>

namespace mpitrain::models {

// y = x W^T + b, weight [out, in] as torch.nn.Linear stores it.
class Linear : public torch::nn::Module {
 public:
  Linear(std::int64_t in, std::int64_t out, bool bias, double init_std);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight, bias;
};

// GPT-2's Conv1D: y = x W + b with weight stored [in, out].
class Conv1D : public torch::nn::Module {
 public:
  Conv1D(std::int64_t in, std::int64_t out, double init_std);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight, bias;
};

class LayerNorm : public torch::nn::Module {
 public:
  LayerNorm(std::int64_t dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight, bias;

 private:
  double eps_;
};

// Llama's RMSNorm: normalised in float32, cast back, then scaled (the order matters in bf16).
class RMSNorm : public torch::nn::Module {
 public:
  RMSNorm(std::int64_t dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;

 private:
  double eps_;
};

class Embedding : public torch::nn::Module {
 public:
  Embedding(std::int64_t count, std::int64_t dim, double init_std);
  torch::Tensor forward(const torch::Tensor& ids);
  torch::Tensor weight;
};

// Activations by their transformers names (ACT2FN): gelu, gelu_new, gelu_pytorch_tanh, relu, silu.
// Throws std::invalid_argument naming an unknown one.
torch::Tensor activation(const std::string& name, const torch::Tensor& x);
void check_activation_name(const std::string& name);  // throws for an unknown one

}  // namespace mpitrain::models
