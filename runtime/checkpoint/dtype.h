// Element types of the safetensors format: names as the format spells them, and their sizes.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace mpitrain::checkpoint {

// Declared in the order of the reference implementation's DType enum; the writer sorts
// tensors by this order (descending) exactly as the reference does, so files come out
// byte-identical to those transformers writes.
enum class DType {
  BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64,
};

std::string_view dtype_name(DType dtype);
std::optional<DType> dtype_from_name(std::string_view name);
std::size_t dtype_size(DType dtype);

}  // namespace mpitrain::checkpoint
