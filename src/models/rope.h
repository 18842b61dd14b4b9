// Rotary position embeddings as transformers computes them: inverse frequencies (default, linear and llama3 scaling), angles from position ids, and their rotation of q and k.
#pragma once

#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <utility>

namespace mpitrain::models {

class ConfigReader;

// `rope_scaling` as a config gives it (null, or an object with rope_type/type and factor);
// fails through `r` naming the key for a type not implemented here.
nlohmann::json read_rope_scaling(const ConfigReader& r, const nlohmann::json& config);

// Inverse frequencies [head_dim / 2] in float32, with transformers' rope_scaling rules applied.
torch::Tensor rope_inv_freq(std::int64_t head_dim, double theta, const nlohmann::json& scaling);

// cos and sin, [1 or batch, 1, seq, head_dim] in `dtype` on `device`: the angles in float32
// whatever the compute dtype, then cast, as transformers does. `position_ids` [batch, seq]
// (undefined: 0..seq-1 for every row).
std::pair<torch::Tensor, torch::Tensor> rope_angles(const torch::Tensor& inv_freq, const torch::Tensor& position_ids,
                                                    std::int64_t seq, at::ScalarType dtype, const at::Device& device);

// x * cos + rotate_half(x) * sin, x [batch, heads, seq, head_dim].
torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);

}  // namespace mpitrain::models
