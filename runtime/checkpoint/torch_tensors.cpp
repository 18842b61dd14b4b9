// The bridge between safetensors bytes and LibTorch tensors (dtype mapping, reads, views for writing).
#include "runtime/checkpoint/torch_tensors.h"

#include "runtime/checkpoint/checkpoint_error.h"

namespace mpitrain::checkpoint {

at::ScalarType to_scalar_type(DType dtype, const std::string& where) {
  switch (dtype) {
    case DType::BOOL: return at::kBool;
    case DType::U8: return at::kByte;
    case DType::I8: return at::kChar;
    case DType::I16: return at::kShort;
    case DType::F16: return at::kHalf;
    case DType::BF16: return at::kBFloat16;
    case DType::I32: return at::kInt;
    case DType::F32: return at::kFloat;
    case DType::F64: return at::kDouble;
    case DType::I64: return at::kLong;
    default: break;
  }
  throw CheckpointError(where, "dtype " + std::string(dtype_name(dtype)) + " has no LibTorch equivalent in this build");
}

DType from_scalar_type(at::ScalarType type) {
  switch (type) {
    case at::kBool: return DType::BOOL;
    case at::kByte: return DType::U8;
    case at::kChar: return DType::I8;
    case at::kShort: return DType::I16;
    case at::kHalf: return DType::F16;
    case at::kBFloat16: return DType::BF16;
    case at::kInt: return DType::I32;
    case at::kFloat: return DType::F32;
    case at::kDouble: return DType::F64;
    case at::kLong: return DType::I64;
    default: break;
  }
  throw std::invalid_argument(std::string("tensor type ") + c10::toString(type) + " cannot be stored in safetensors");
}

torch::Tensor read_tensor(const SafetensorsFile& file, const TensorEntry& entry) {
  auto type = to_scalar_type(entry.dtype, file.path() + ": tensor '" + entry.name + "'");
  auto out = torch::empty(entry.shape, torch::TensorOptions().dtype(type));
  file.read_into(entry, out.data_ptr());
  return out;
}

torch::Tensor read_tensor_slice(const SafetensorsFile& file, const TensorEntry& entry,
                                const std::vector<std::int64_t>& offsets, const std::vector<std::int64_t>& sizes) {
  auto type = to_scalar_type(entry.dtype, file.path() + ": tensor '" + entry.name + "'");
  auto out = torch::empty(sizes, torch::TensorOptions().dtype(type));
  file.read_slice(entry, offsets, sizes, out.data_ptr());
  return out;
}

TensorBytes tensor_bytes(const std::string& name, const torch::Tensor& t) {
  if (!t.is_contiguous() || !t.device().is_cpu())
    throw std::invalid_argument("tensor '" + name + "' must be a contiguous CPU tensor to be written");
  TensorSpec spec{name, from_scalar_type(t.scalar_type()), t.sizes().vec()};
  return TensorBytes{std::move(spec), t.data_ptr()};
}

}  // namespace mpitrain::checkpoint
