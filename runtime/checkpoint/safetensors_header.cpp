// The safetensors header: parsing with full validation, and building one with every offset known up front.
#include "runtime/checkpoint/safetensors_header.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/input_file.h"

namespace mpitrain::checkpoint {
namespace {

using nlohmann::json;

// nlohmann keeps the last of two equal keys; the format forbids duplicates, so the parser
// callback records the top-level keys and rejects a repeat.
json parse_rejecting_duplicates(std::string_view text, const std::string& source) {
  std::set<std::string> seen;
  std::string duplicate;
  auto callback = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (!seen.insert(key).second && duplicate.empty()) duplicate = key;
    }
    return true;
  };
  check_json_depth(std::string(text), source);
  json header;
  try {
    header = json::parse(text.begin(), text.end(), callback);
  } catch (const json::exception& e) {
    throw CheckpointError(source, std::string("header is not valid JSON (") + e.what() + ")");
  }
  if (!duplicate.empty()) throw CheckpointError(source, "duplicate tensor name '" + duplicate + "' in header");
  return header;
}

std::uint64_t checked_nbytes(const std::vector<std::int64_t>& shape, DType dtype, const std::string& where) {
  std::uint64_t count = 1;
  for (auto dim : shape) {
    const auto udim = static_cast<std::uint64_t>(dim);
    if (udim != 0 && count > std::numeric_limits<std::uint64_t>::max() / udim / 8)
      throw CheckpointError(where, "shape " + shape_to_string(shape) + " is too large");
    count *= udim;
  }
  return count * dtype_size(dtype);
}

TensorEntry parse_entry(const std::string& name, const json& value, const std::string& source) {
  const std::string where = source + ": tensor '" + name + "'";
  auto fail = [&](const std::string& problem) -> TensorEntry { throw CheckpointError(where, problem); };
  if (!value.is_object()) return fail("entry is not a JSON object");
  TensorEntry entry;
  entry.name = name;

  auto dtype_it = value.find("dtype");
  if (dtype_it == value.end() || !dtype_it->is_string()) return fail("missing or non-string 'dtype'");
  auto dtype = dtype_from_name(dtype_it->get<std::string>());
  if (!dtype) return fail("unknown dtype '" + dtype_it->get<std::string>() + "'");
  entry.dtype = *dtype;

  auto shape_it = value.find("shape");
  if (shape_it == value.end() || !shape_it->is_array()) return fail("missing or non-array 'shape'");
  for (const auto& dim : *shape_it) {
    if (!dim.is_number_unsigned()) return fail("shape holds a value that is not a non-negative integer");
    entry.shape.push_back(static_cast<std::int64_t>(dim.get<std::uint64_t>()));
  }

  auto offsets_it = value.find("data_offsets");
  if (offsets_it == value.end() || !offsets_it->is_array() || offsets_it->size() != 2 ||
      !(*offsets_it)[0].is_number_unsigned() || !(*offsets_it)[1].is_number_unsigned())
    return fail("'data_offsets' must be two non-negative integers");
  entry.begin = (*offsets_it)[0].get<std::uint64_t>();
  entry.end = (*offsets_it)[1].get<std::uint64_t>();
  if (entry.end < entry.begin) return fail("data_offsets end before they begin");

  const auto expected = checked_nbytes(entry.shape, entry.dtype, where);
  if (entry.nbytes() != expected)
    return fail("data_offsets span " + std::to_string(entry.nbytes()) + " bytes but dtype " +
                std::string(dtype_name(entry.dtype)) + " x shape " + shape_to_string(entry.shape) + " needs " +
                std::to_string(expected));
  return entry;
}

// Offsets must tile the byte buffer exactly: no gaps, no overlaps, nothing outside it.
void check_tiling(std::vector<TensorEntry>& tensors, std::uint64_t buffer_size, const std::string& source) {
  std::sort(tensors.begin(), tensors.end(), [](const TensorEntry& a, const TensorEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  std::uint64_t cursor = 0;
  const TensorEntry* previous = nullptr;
  for (const auto& t : tensors) {
    if (t.end > buffer_size)
      throw CheckpointError(source, "tensor '" + t.name + "' data_offsets [" + std::to_string(t.begin) + "," +
                                        std::to_string(t.end) + "] run past the end of the data (" +
                                        std::to_string(buffer_size) + " bytes; file truncated?)");
    if (t.begin < cursor)
      throw CheckpointError(source, "tensors '" + previous->name + "' and '" + t.name + "' overlap");
    if (t.begin > cursor)
      throw CheckpointError(source, "gap of " + std::to_string(t.begin - cursor) + " bytes before tensor '" +
                                        t.name + "'");
    cursor = t.end;
    previous = &t;
  }
  if (cursor != buffer_size)
    throw CheckpointError(source, std::to_string(buffer_size - cursor) +
                                      " bytes after the last tensor are not described by the header");
}

}  // namespace

std::int64_t TensorEntry::numel() const {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

const TensorEntry* SafetensorsHeader::find(std::string_view name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

SafetensorsHeader parse_safetensors_header_json(std::string_view text, std::uint64_t buffer_size,
                                                const std::string& source) {
  if (text.empty() || text.front() != '{') throw CheckpointError(source, "header does not start with '{'");
  json header = parse_rejecting_duplicates(text, source);
  if (!header.is_object()) throw CheckpointError(source, "header is not a JSON object");

  SafetensorsHeader result;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it->is_object()) throw CheckpointError(source, "__metadata__ is not a JSON object");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string()) throw CheckpointError(source, "__metadata__ value '" + m.key() + "' is not a string");
        result.metadata[m.key()] = m->get<std::string>();
      }
      continue;
    }
    result.tensors.push_back(parse_entry(it.key(), *it, source));
  }
  check_tiling(result.tensors, buffer_size, source);
  return result;
}

SafetensorsHeader parse_safetensors(const std::uint8_t* prefix, std::size_t prefix_size, std::uint64_t file_size,
                                    const std::string& source) {
  if (file_size < 8)
    throw CheckpointError(source, "truncated: " + std::to_string(file_size) +
                                      " bytes, too short for the 8-byte header length");
  std::uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | prefix[i];  // little-endian
  if (header_len > kMaxHeaderBytes)
    throw CheckpointError(source, "header length " + std::to_string(header_len) + " exceeds the 100 MB limit");
  if (header_len > file_size - 8)
    throw CheckpointError(source, "header length " + std::to_string(header_len) + " exceeds the file size (" +
                                      std::to_string(file_size) + " bytes; truncated?)");
  if (prefix_size < 8 + header_len) throw CheckpointError(source, "internal: header prefix not fully read");
  std::string_view text(reinterpret_cast<const char*>(prefix + 8), header_len);
  // Trailing spaces are the format's padding; strip them before parsing.
  while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
  auto header = parse_safetensors_header_json(text, file_size - 8 - header_len, source);
  header.data_start = 8 + header_len;
  return header;
}

std::string shape_to_string(const std::vector<std::int64_t>& shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) out += (i ? "," : "") + std::to_string(shape[i]);
  return out + "]";
}

std::uint64_t spec_nbytes(const TensorSpec& spec) { return checked_nbytes(spec.shape, spec.dtype, spec.name); }

SafetensorsPlan plan_safetensors(std::vector<TensorSpec> specs, const std::map<std::string, std::string>& metadata) {
  std::sort(specs.begin(), specs.end(), [](const TensorSpec& a, const TensorSpec& b) {
    if (a.dtype != b.dtype) return a.dtype > b.dtype;
    return a.name < b.name;
  });
  for (std::size_t i = 1; i < specs.size(); ++i)
    if (specs[i].name == specs[i - 1].name)
      throw CheckpointError(specs[i].name, "tensor name given twice to the safetensors writer");

  SafetensorsPlan plan;
  std::string header = "{";
  if (!metadata.empty()) header += "\"__metadata__\":" + json(metadata).dump();
  std::uint64_t offset = 0;
  for (auto& spec : specs) {
    TensorEntry entry{spec.name, spec.dtype, spec.shape, offset, offset + spec_nbytes(spec)};
    offset = entry.end;
    if (header.size() > 1) header += ",";
    header += json(spec.name).dump() + ":{\"dtype\":\"" + std::string(dtype_name(spec.dtype)) +
              "\",\"shape\":" + json(spec.shape).dump() + ",\"data_offsets\":[" + std::to_string(entry.begin) +
              "," + std::to_string(entry.end) + "]}";
    plan.tensors.push_back(std::move(entry));
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');

  plan.preamble.resize(8);
  std::uint64_t len = header.size();
  for (int i = 0; i < 8; ++i) plan.preamble[i] = static_cast<char>((len >> (8 * i)) & 0xff);
  plan.preamble += header;
  plan.file_size = plan.preamble.size() + offset;
  return plan;
}

}  // namespace mpitrain::checkpoint
