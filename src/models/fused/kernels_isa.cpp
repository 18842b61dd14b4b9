// The fused CPU kernels of kernels.h, compiled once per instruction set: MPITRAIN_ISA names the namespace, CPU_CAPABILITY picks ATen's vector width.
// No std:: container here: a template instantiated in this file is a weak symbol the linker may
// pick for every other file too, compiled for an instruction set the CPU may lack.
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "src/models/fused/kernels.h"

namespace mpitrain::models::fused::MPITRAIN_ISA {
namespace {

using Vec = at::vec::Vectorized<float>;
constexpr std::int64_t kChunk = 256;     // elements converted to float32 at a time, on the stack
constexpr std::int64_t kMaxRope = 1024;  // the widest rotary head a row buffer holds

inline Vec load(const float* p, std::int64_t count) {
  return count == Vec::size() ? Vec::loadu(p) : Vec::loadu(p, count);  // a partial load fills zeros
}
inline void store(const Vec& v, float* p, std::int64_t count) {
  if (count == Vec::size()) {
    v.store(p);
  } else {  // through lanes: GCC cannot see that ATen's partial store keeps count <= size
    float lanes[Vec::size()];
    v.store(lanes);
    std::copy(lanes, lanes + std::min<std::int64_t>(count, Vec::size()), p);
  }
}
// f(offset, count) over [0, n) a vector at a time, the tail as a partial vector.
template <typename F>
inline void for_vectors(std::int64_t n, const F& f) {
  std::int64_t i = 0;
  for (; i + Vec::size() <= n; i += Vec::size()) f(i, static_cast<std::int64_t>(Vec::size()));
  if (i < n) f(i, n - i);
}
inline float sum_of(const Vec& v) {
  float lanes[Vec::size()];
  v.store(lanes);
  float sum = 0;
  for (int i = 0; i < Vec::size(); ++i) sum += lanes[i];
  return sum;
}

using BVec = at::vec::Vectorized<bf16>;  // twice Vec's lanes

// Conversions a BVec at a time (ATen's, rounding to nearest even), the tail one by one.
template <typename T>
inline void to_float(const T* src, float* dst, std::int64_t n) {
  std::int64_t i = 0;
  if constexpr (std::is_same_v<T, bf16>) {
    for (; i + BVec::size() <= n; i += BVec::size()) {
      const auto [low, high] = at::vec::convert_bfloat16_float(BVec::loadu(src + i));
      low.store(dst + i);
      high.store(dst + i + Vec::size());
    }
  }
  for (; i < n; ++i) dst[i] = static_cast<float>(src[i]);
}
template <typename T>
inline void from_float(const float* src, T* dst, std::int64_t n) {
  std::int64_t i = 0;
  if constexpr (std::is_same_v<T, bf16>) {
    for (; i + BVec::size() <= n; i += BVec::size())
      at::vec::convert_float_bfloat16(Vec::loadu(src + i), Vec::loadu(src + i + Vec::size())).store(dst + i);
  }
  for (; i < n; ++i) dst[i] = static_cast<T>(src[i]);
}
// Where an eager op would leave a bfloat16 result, the value rounded as it would be.
template <typename T>
inline void round_as(float* v, std::int64_t n) {
  if constexpr (std::is_same_v<T, bf16>) {
    std::int64_t i = 0;
    for (; i + BVec::size() <= n; i += BVec::size()) {
      const auto [low, high] = at::vec::convert_bfloat16_float(
          at::vec::convert_float_bfloat16(Vec::loadu(v + i), Vec::loadu(v + i + Vec::size())));
      low.store(v + i);
      high.store(v + i + Vec::size());
    }
    for (; i < n; ++i) v[i] = static_cast<float>(bf16(v[i]));
  }
}

inline Vec sigmoid(const Vec& x) { return Vec(1.f) / (Vec(1.f) + x.neg().exp()); }

// silu(gate) (rounded as torch.silu's output) times up.
template <typename T>
void swiglu_forward(const T* gate, const T* up, T* out, std::int64_t n) {
  float g[kChunk], u[kChunk];
  for (std::int64_t start = 0; start < n; start += kChunk) {
    const auto m = std::min(kChunk, n - start);
    to_float(gate + start, g, m);
    to_float(up + start, u, m);
    for_vectors(m, [&](std::int64_t i, std::int64_t c) { store(load(g + i, c) * sigmoid(load(g + i, c)), g + i, c); });
    round_as<T>(g, m);
    for_vectors(m, [&](std::int64_t i, std::int64_t c) { store(load(g + i, c) * load(u + i, c), g + i, c); });
    from_float(g, out + start, m);
  }
}

// d up = dout * silu(gate); d gate = (dout * up) * silu'(gate), each product rounded as eager's.
template <typename T>
void swiglu_backward(const T* gate, const T* up, const T* dout, T* dgate, T* dup, std::int64_t n) {
  float g[kChunk], u[kChunk], d[kChunk], s[kChunk], a[kChunk];
  for (std::int64_t start = 0; start < n; start += kChunk) {
    const auto m = std::min(kChunk, n - start);
    to_float(gate + start, g, m);
    to_float(up + start, u, m);
    to_float(dout + start, d, m);
    for_vectors(m, [&](std::int64_t i, std::int64_t c) {
      const auto x = load(g + i, c), sig = sigmoid(x);
      store(sig, s + i, c);
      store(x * sig, a + i, c);
    });
    round_as<T>(a, m);
    for_vectors(m, [&](std::int64_t i, std::int64_t c) {
      const auto dy = load(d + i, c);
      store(dy * load(a + i, c), a + i, c);  // d up
      store(dy * load(u + i, c), u + i, c);  // d silu
    });
    round_as<T>(u, m);
    for_vectors(m, [&](std::int64_t i, std::int64_t c) {
      const auto sig = load(s + i, c);
      store(load(u + i, c) * sig * (Vec(1.f) + load(g + i, c) * (Vec(1.f) - sig)), g + i, c);
    });
    from_float(g, dgate + start, m);
    from_float(a, dup + start, m);
  }
}

void rms_norm_forward(const float* x, const float* weight, float* out, float* inv_rms, std::int64_t rows,
                      std::int64_t dim, float eps) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * dim;
    Vec squares(0.f);
    for_vectors(dim, [&](std::int64_t i, std::int64_t c) {
      const auto v = load(row + i, c);
      squares = squares + v * v;
    });
    const float inv = 1.f / std::sqrt(sum_of(squares) / static_cast<float>(dim) + eps);
    inv_rms[r] = inv;
    for_vectors(dim, [&](std::int64_t i, std::int64_t c) {
      store(load(weight + i, c) * (load(row + i, c) * Vec(inv)), out + r * dim + i, c);
    });
  }
}

// n = x·r, dh = dout·weight: dx = r·(dh − n·mean(dh·n)), dweight += dout·n.
void rms_norm_backward(const float* x, const float* weight, const float* inv_rms, const float* dout, float* dx,
                       float* dweight, std::int64_t rows, std::int64_t dim) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const float *row = x + r * dim, *dy = dout + r * dim;
    const Vec inv(inv_rms[r]);
    Vec dots(0.f);
    for_vectors(dim, [&](std::int64_t i, std::int64_t c) {
      const auto n = load(row + i, c) * inv, g = load(dy + i, c);
      dots = dots + g * load(weight + i, c) * n;
      store(load(dweight + i, c) + g * n, dweight + i, c);
    });
    const Vec mean_dot(sum_of(dots) / static_cast<float>(dim));
    for_vectors(dim, [&](std::int64_t i, std::int64_t c) {
      const auto n = load(row + i, c) * inv, dh = load(dy + i, c) * load(weight + i, c);
      store(inv * (dh - n * mean_dot), dx + r * dim + i, c);
    });
  }
}

struct RowAngles {
  const float *cos, *sin;
};
inline RowAngles angles_of(const float* cos, const float* sin, const RopeRows& shape, std::int64_t row,
                           std::int64_t* x_offset) {
  const auto b = row / (shape.heads * shape.seq), h = (row / shape.seq) % shape.heads, s = row % shape.seq;
  *x_offset = b * shape.x_batch + h * shape.x_head + s * shape.x_seq;
  const auto angle = b * shape.angle_batch + s * shape.angle_seq;
  return {cos + angle, sin + angle};
}

// x·cos + rotate_half(x)·sin, rotate_half(x) = [−x2, x1].
template <typename T>
void rope_forward(const T* x, const float* cos, const float* sin, float* out, const RopeRows& shape,
                  std::int64_t begin, std::int64_t end) {
  float xf[kMaxRope];
  const auto half = shape.dim / 2;
  for (auto r = begin; r < end; ++r) {
    std::int64_t offset = 0;
    const auto a = angles_of(cos, sin, shape, r, &offset);
    to_float(x + offset, xf, shape.dim);
    float* o = out + r * shape.dim;
    for_vectors(half, [&](std::int64_t i, std::int64_t c) {
      const auto x1 = load(xf + i, c), x2 = load(xf + half + i, c);
      store(x1 * load(a.cos + i, c) - x2 * load(a.sin + i, c), o + i, c);
      store(x2 * load(a.cos + half + i, c) + x1 * load(a.sin + half + i, c), o + half + i, c);
    });
  }
}

// The transpose: dx1 = dy1·cos1 + dy2·sin2, dx2 = dy2·cos2 − dy1·sin1.
template <typename T>
void rope_backward(const float* dout, const float* cos, const float* sin, T* dx, const RopeRows& shape,
                   std::int64_t begin, std::int64_t end) {
  float g[kMaxRope];
  const auto half = shape.dim / 2;
  for (auto r = begin; r < end; ++r) {
    std::int64_t offset = 0;
    const auto a = angles_of(cos, sin, shape, r, &offset);
    const float* dy = dout + r * shape.dim;
    for_vectors(half, [&](std::int64_t i, std::int64_t c) {
      const auto d1 = load(dy + i, c), d2 = load(dy + half + i, c);
      store(d1 * load(a.cos + i, c) + d2 * load(a.sin + half + i, c), g + i, c);
      store(d2 * load(a.cos + half + i, c) - d1 * load(a.sin + i, c), g + half + i, c);
    });
    from_float(g, dx + r * shape.dim, shape.dim);
  }
}

inline float max_of(const Vec& v) {
  float lanes[Vec::size()];
  v.store(lanes);
  return *std::max_element(lanes, lanes + Vec::size());
}

// Max, exp and normalise over the visible keys (ATen's softmax passes), zeros past them.
template <typename T>
void causal_softmax_forward(const T* scores, float* probs, T* probs_in_dtype, const CausalRows& rows,
                            std::int64_t begin, std::int64_t end) {
  const float lowest = -std::numeric_limits<float>::infinity();
  for (auto r = begin; r < end; ++r) {
    const T* s = scores + r * rows.keys;
    float* p = probs + r * rows.keys;
    const auto visible = rows.visible(r);
    to_float(s, p, visible);
    Vec max_vec(lowest);
    for_vectors(visible, [&](std::int64_t i, std::int64_t c) {
      const auto x = load(p + i, c);
      const auto candidates = c == Vec::size() ? x : Vec::set(Vec(lowest), x, c);
      max_vec = Vec::blendv(max_vec, candidates, candidates > max_vec);  // scores are never NaN here
    });
    const Vec max(max_of(max_vec));
    Vec sums(0.f);
    for_vectors(visible, [&](std::int64_t i, std::int64_t c) {
      const auto e = (load(p + i, c) - max).exp();
      store(e, p + i, c);
      sums = sums + (c == Vec::size() ? e : Vec::set(Vec(0.f), e, c));
    });
    const Vec inverse(1.f / sum_of(sums));
    for_vectors(visible, [&](std::int64_t i, std::int64_t c) { store(load(p + i, c) * inverse, p + i, c); });
    std::fill(p + visible, p + rows.keys, 0.f);
    if constexpr (std::is_same_v<T, bf16>) from_float(p, probs_in_dtype + r * rows.keys, rows.keys);
  }
}

template <typename T>
void causal_softmax_backward(const T* dprobs, const float* probs, T* dscores, const CausalRows& rows,
                             std::int64_t begin, std::int64_t end, float* scratch) {
  for (auto r = begin; r < end; ++r) {
    const T* dp = dprobs + r * rows.keys;
    const float* p = probs + r * rows.keys;
    T* ds = dscores + r * rows.keys;
    const auto visible = rows.visible(r);
    // dprobs, then dscores, in float32 in the row buffer
    float* g = scratch;
    to_float(dp, g, visible);
    Vec dots(0.f);
    for_vectors(visible, [&](std::int64_t i, std::int64_t c) { dots = dots + load(g + i, c) * load(p + i, c); });
    const Vec dot(sum_of(dots));
    for_vectors(visible, [&](std::int64_t i, std::int64_t c) { store(load(p + i, c) * (load(g + i, c) - dot), g + i, c); });
    std::fill(g + visible, g + rows.keys, 0.f);
    from_float(g, ds, rows.keys);
  }
}

#define MPITRAIN_STRINGIFY(x) #x
#define MPITRAIN_NAME(x) MPITRAIN_STRINGIFY(x)

}  // namespace

KernelTable table() {
  return {MPITRAIN_NAME(CPU_CAPABILITY), &swiglu_forward<float>, &swiglu_forward<bf16>, &swiglu_backward<float>,
          &swiglu_backward<bf16>, &rms_norm_forward, &rms_norm_backward, &rope_forward<float>, &rope_forward<bf16>,
          &rope_backward<float>, &rope_backward<bf16>, &causal_softmax_forward<float>,
          &causal_softmax_forward<bf16>, &causal_softmax_backward<float>, &causal_softmax_backward<bf16>};
}

}  // namespace mpitrain::models::fused::MPITRAIN_ISA
