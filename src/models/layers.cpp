// The building blocks of the three architectures, with HF parameter names (weight, bias).
#include "src/models/layers.h"

#include <cmath>
#include <stdexcept>

namespace mpitrain::models {

Linear::Linear(std::int64_t in, std::int64_t out, bool with_bias, double init_std) {
  weight = register_parameter("weight", torch::randn({out, in}) * init_std);
  if (with_bias) bias = register_parameter("bias", torch::zeros({out}));
}

torch::Tensor Linear::forward(const torch::Tensor& x) { return torch::linear(x, weight, bias); }

Conv1D::Conv1D(std::int64_t in, std::int64_t out, double init_std) {
  weight = register_parameter("weight", torch::randn({in, out}) * init_std);
  bias = register_parameter("bias", torch::zeros({out}));
}

torch::Tensor Conv1D::forward(const torch::Tensor& x) {
  auto out_shape = x.sizes().vec();
  out_shape.back() = weight.size(1);
  // addmm as transformers computes it, so the float rounding matches.
  return torch::addmm(bias, x.reshape({-1, x.size(-1)}), weight).view(out_shape);
}

LayerNorm::LayerNorm(std::int64_t dim, double eps) : eps_(eps) {
  weight = register_parameter("weight", torch::ones({dim}));
  bias = register_parameter("bias", torch::zeros({dim}));
}

torch::Tensor LayerNorm::forward(const torch::Tensor& x) {
  return torch::layer_norm(x, {weight.size(0)}, weight, bias, eps_);
}

RMSNorm::RMSNorm(std::int64_t dim, double eps) : eps_(eps) { weight = register_parameter("weight", torch::ones({dim})); }

torch::Tensor RMSNorm::forward(const torch::Tensor& x) {
  const auto input_type = x.scalar_type();
  auto h = x.to(torch::kFloat32);
  auto variance = h.pow(2).mean(-1, /*keepdim=*/true);
  h = h * torch::rsqrt(variance + eps_);
  return weight * h.to(input_type);
}

Embedding::Embedding(std::int64_t count, std::int64_t dim, double init_std) {
  weight = register_parameter("weight", torch::randn({count, dim}) * init_std);
}

torch::Tensor Embedding::forward(const torch::Tensor& ids) { return torch::embedding(weight, ids); }

void check_activation_name(const std::string& name) {
  if (name != "gelu" && name != "gelu_new" && name != "gelu_pytorch_tanh" && name != "relu" && name != "silu" &&
      name != "swish")
    throw std::invalid_argument("activation '" + name +
                                "' is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu, silu)");
}

torch::Tensor activation(const std::string& name, const torch::Tensor& x) {
  if (name == "gelu") return torch::gelu(x);
  if (name == "gelu_pytorch_tanh") return torch::gelu(x, "tanh");
  if (name == "gelu_new") {
    // transformers' NewGELUActivation, written out so the rounding matches it.
    const double k = std::sqrt(2.0 / M_PI);
    return 0.5 * x * (1.0 + torch::tanh(k * (x + 0.044715 * torch::pow(x, 3.0))));
  }
  if (name == "relu") return torch::relu(x);
  if (name == "silu" || name == "swish") return torch::silu(x);
  check_activation_name(name);
  return x;
}

}  // namespace mpitrain::models
