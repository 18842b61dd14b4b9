// SwiGLU, RMSNorm and rotary embeddings as single passes on the CPU (see fused_ops.h).
#include "src/models/fused/fused_ops.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>

#include "src/models/fused/kernels.h"

namespace mpitrain::models::fused {
namespace {

std::atomic<bool> fused_on{true};
constexpr std::int64_t kGrain = 16384;  // elements below which a pass is not split over threads

bool float_or_bf16(const torch::Tensor& t) {
  return t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16;
}

struct SwiGluFunction : torch::autograd::Function<SwiGluFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& gate_in,
                               const torch::Tensor& up_in) {
    const auto gate = gate_in.contiguous(), up = up_in.contiguous();
    ctx->save_for_backward({gate, up});
    auto out = at::empty_like(gate);
    const auto& k = kernels();
    at::parallel_for(0, gate.numel(), kGrain, [&](std::int64_t begin, std::int64_t end) {
      if (gate.scalar_type() == at::kFloat)
        k.swiglu_forward_f32(gate.data_ptr<float>() + begin, up.data_ptr<float>() + begin,
                             out.data_ptr<float>() + begin, end - begin);
      else
        k.swiglu_forward_bf16(gate.data_ptr<bf16>() + begin, up.data_ptr<bf16>() + begin,
                              out.data_ptr<bf16>() + begin, end - begin);
    });
    return out;
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &gate = saved[0], &up = saved[1];
    const auto dout = grads[0].to(gate.scalar_type()).contiguous();
    auto dgate = at::empty_like(gate), dup = at::empty_like(up);
    const auto& k = kernels();
    at::parallel_for(0, gate.numel(), kGrain, [&](std::int64_t begin, std::int64_t end) {
      if (gate.scalar_type() == at::kFloat)
        k.swiglu_backward_f32(gate.data_ptr<float>() + begin, up.data_ptr<float>() + begin,
                              dout.data_ptr<float>() + begin, dgate.data_ptr<float>() + begin,
                              dup.data_ptr<float>() + begin, end - begin);
      else
        k.swiglu_backward_bf16(gate.data_ptr<bf16>() + begin, up.data_ptr<bf16>() + begin,
                               dout.data_ptr<bf16>() + begin, dgate.data_ptr<bf16>() + begin,
                               dup.data_ptr<bf16>() + begin, end - begin);
    });
    return {dgate, dup};
  }
};

struct RmsNormFunction : torch::autograd::Function<RmsNormFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x_in,
                               const torch::Tensor& weight_in, double eps) {
    const auto x = x_in.contiguous(), weight = weight_in.contiguous();
    const auto dim = x.size(-1), rows = x.numel() / dim;
    auto out = at::empty_like(x), inv_rms = at::empty({rows}, x.options());
    at::parallel_for(0, rows, rows_per_grain(dim), [&](std::int64_t begin, std::int64_t end) {
      kernels().rms_norm_forward(x.data_ptr<float>() + begin * dim, weight.data_ptr<float>(),
                                 out.data_ptr<float>() + begin * dim, inv_rms.data_ptr<float>() + begin, end - begin,
                                 dim, static_cast<float>(eps));
    });
    ctx->save_for_backward({x, weight, inv_rms});
    return out;
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &weight = saved[1], &inv_rms = saved[2];
    const auto dout = grads[0].to(at::kFloat).contiguous();
    const auto dim = x.size(-1), rows = x.numel() / dim;
    auto dx = at::empty_like(x);
    // Each thread adds its rows' weight gradients into its own row of partial sums.
    auto partial = at::zeros({at::get_num_threads(), dim}, x.options());
    at::parallel_for(0, rows, rows_per_grain(dim), [&](std::int64_t begin, std::int64_t end) {
      kernels().rms_norm_backward(x.data_ptr<float>() + begin * dim, weight.data_ptr<float>(),
                                  inv_rms.data_ptr<float>() + begin, dout.data_ptr<float>() + begin * dim,
                                  dx.data_ptr<float>() + begin * dim,
                                  partial.data_ptr<float>() + at::get_thread_num() * dim, end - begin, dim);
    });
    return {dx, partial.sum(0), torch::Tensor()};
  }
};

RopeRows rope_rows(const torch::Tensor& x, const torch::Tensor& angles) {
  RopeRows shape;
  shape.heads = x.size(1);
  shape.seq = x.size(2);
  shape.dim = x.size(3);
  shape.x_batch = x.stride(0);
  shape.x_head = x.stride(1);
  shape.x_seq = x.stride(2);
  shape.angle_batch = angles.size(0) == 1 ? 0 : angles.stride(0);
  shape.angle_seq = angles.stride(2);
  return shape;
}

struct RopeFunction : torch::autograd::Function<RopeFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& cos_in, const torch::Tensor& sin_in) {
    const auto cos = cos_in.contiguous(), sin = sin_in.contiguous();
    const auto shape = rope_rows(x, cos);
    auto out = at::empty(x.sizes(), x.options().dtype(at::kFloat));
    at::parallel_for(0, x.numel() / shape.dim, rows_per_grain(shape.dim), [&](std::int64_t begin, std::int64_t end) {
      if (x.scalar_type() == at::kFloat)
        kernels().rope_forward_f32(x.data_ptr<float>(), cos.data_ptr<float>(), sin.data_ptr<float>(),
                                   out.data_ptr<float>(), shape, begin, end);
      else
        kernels().rope_forward_bf16(x.data_ptr<bf16>(), cos.data_ptr<float>(), sin.data_ptr<float>(),
                                    out.data_ptr<float>(), shape, begin, end);
    });
    ctx->save_for_backward({cos, sin});
    ctx->saved_data["dtype"] = static_cast<std::int64_t>(x.scalar_type());
    return out;
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &cos = saved[0], &sin = saved[1];
    const auto dout = grads[0].to(at::kFloat).contiguous();
    const auto dtype = static_cast<at::ScalarType>(ctx->saved_data["dtype"].toInt());
    auto dx = at::empty(dout.sizes(), dout.options().dtype(dtype));
    const auto shape = rope_rows(dout, cos);
    at::parallel_for(0, dout.numel() / shape.dim, rows_per_grain(shape.dim), [&](std::int64_t begin, std::int64_t end) {
      if (dtype == at::kFloat)
        kernels().rope_backward_f32(dout.data_ptr<float>(), cos.data_ptr<float>(), sin.data_ptr<float>(),
                                    dx.data_ptr<float>(), shape, begin, end);
      else
        kernels().rope_backward_bf16(dout.data_ptr<float>(), cos.data_ptr<float>(), sin.data_ptr<float>(),
                                     dx.data_ptr<bf16>(), shape, begin, end);
    });
    return {dx, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

std::int64_t rows_per_grain(std::int64_t dim) { return std::max<std::int64_t>(1, kGrain / std::max<std::int64_t>(dim, 1)); }

void set_cpu_fused_kernels(bool on) { fused_on = on; }
bool cpu_fused_kernels() { return fused_on; }

bool swiglu_fusable(const torch::Tensor& gate, const torch::Tensor& up) {
  return fused_on && gate.device().is_cpu() && up.device().is_cpu() && gate.sizes() == up.sizes() &&
         gate.scalar_type() == up.scalar_type() && float_or_bf16(gate);
}

torch::Tensor swiglu(const torch::Tensor& gate, const torch::Tensor& up) { return SwiGluFunction::apply(gate, up); }

bool rms_norm_fusable(const torch::Tensor& x, const torch::Tensor& weight) {
  return fused_on && x.device().is_cpu() && x.scalar_type() == at::kFloat && weight.scalar_type() == at::kFloat &&
         x.dim() >= 1 && weight.dim() == 1 && weight.size(0) == x.size(-1) && x.numel() > 0;
}

torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  return RmsNormFunction::apply(x, weight, eps);
}

bool rope_fusable(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  return fused_on && x.device().is_cpu() && float_or_bf16(x) && x.dim() == 4 && x.stride(3) == 1 &&
         x.size(3) % 2 == 0 && x.size(3) <= 1024 && cos.scalar_type() == at::kFloat &&
         sin.scalar_type() == at::kFloat && cos.sizes() == sin.sizes() && cos.dim() == 4 && cos.size(1) == 1 &&
         (cos.size(0) == 1 || cos.size(0) == x.size(0)) && cos.size(2) == x.size(2) && cos.size(3) == x.size(3) &&
         !cos.requires_grad() && !sin.requires_grad() && x.numel() > 0;
}

torch::Tensor rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  return RopeFunction::apply(x, cos, sin);
}

}  // namespace mpitrain::models::fused
