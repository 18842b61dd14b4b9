// Rotary position embeddings as transformers computes them: inverse frequencies (default, linear and llama3 scaling), angles from position ids, and their rotation of q and k.
#include "src/models/rope.h"

#include <cmath>

#include "src/models/config_reader.h"
#include "src/models/fused/fused_ops.h"

namespace mpitrain::models {
namespace {

std::string rope_type(const nlohmann::json& scaling) {
  return scaling.value("rope_type", scaling.value("type", std::string("default")));
}

torch::Tensor rotate_half(const torch::Tensor& x) {
  const auto half = x.size(-1) / 2;
  return torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

}  // namespace

nlohmann::json read_rope_scaling(const ConfigReader& r, const nlohmann::json& config) {
  const auto it = config.find("rope_scaling");
  if (it == config.end() || it->is_null()) return nullptr;
  if (!it->is_object()) r.fail("rope_scaling must be null or an object");
  const auto type = rope_type(*it);
  if (type != "default" && type != "linear" && type != "llama3")
    r.fail("rope_scaling type '" + type + "' is not supported (default, linear, llama3)");
  if (type != "default" && !it->contains("factor")) r.fail("rope_scaling needs a 'factor'");
  return *it;
}

torch::Tensor rope_inv_freq(std::int64_t head_dim, double theta, const nlohmann::json& scaling) {
  auto exponents = torch::arange(0, head_dim, 2, torch::kInt64).to(torch::kFloat32) / static_cast<double>(head_dim);
  auto inv_freq = 1.0 / torch::pow(theta, exponents);
  if (scaling.is_null() || rope_type(scaling) == "default") return inv_freq;
  const double factor = scaling.at("factor").get<double>();
  if (rope_type(scaling) == "linear") return inv_freq / factor;
  // llama3: long wavelengths slowed by `factor`, short ones kept, a smooth blend in between.
  const double low = scaling.value("low_freq_factor", 1.0);
  const double high = scaling.value("high_freq_factor", 4.0);
  const double original = scaling.value("original_max_position_embeddings", 8192.0);
  const double low_wavelen = original / low, high_wavelen = original / high;
  auto wavelen = 2 * M_PI / inv_freq;
  auto scaled = torch::where(wavelen > low_wavelen, inv_freq / factor, inv_freq);
  auto smooth = (original / wavelen - low) / (high - low);
  auto smoothed = (1 - smooth) * scaled / factor + smooth * scaled;
  auto medium = (wavelen >= high_wavelen).logical_and(wavelen <= low_wavelen);
  return torch::where(medium, smoothed, scaled);
}

std::pair<torch::Tensor, torch::Tensor> rope_angles(const torch::Tensor& inv_freq, const torch::Tensor& position_ids,
                                                    std::int64_t seq, at::ScalarType dtype, const at::Device& device) {
  auto positions = position_ids.defined()
                       ? position_ids.to(device, torch::kFloat32)
                       : torch::arange(seq, torch::TensorOptions().dtype(torch::kFloat32).device(device)).unsqueeze(0);
  auto freqs = positions.unsqueeze(-1) * inv_freq.to(device);
  auto emb = torch::cat({freqs, freqs}, -1).unsqueeze(1);
  return {emb.cos().to(dtype), emb.sin().to(dtype)};
}

torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  if (fused::rope_fusable(x, cos, sin)) return fused::rope(x, cos, sin);
  return x * cos + rotate_half(x) * sin;
}

}  // namespace mpitrain::models
