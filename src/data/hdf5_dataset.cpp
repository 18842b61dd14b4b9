// Training data in HDF5: a token stream cut into seq_len windows (causal LM) or rows with labels (classification).
#include "src/data/hdf5_dataset.h"

#include <hdf5.h>

#include <algorithm>
#include <filesystem>
#include <stdexcept>

#include "runtime/checkpoint/atomic_file.h"

namespace mpitrain::data {
namespace {

struct Silence {
  Silence() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }  // errors become our exceptions, not stderr dumps
};

void check(herr_t status, const std::string& where, const std::string& what) {
  if (status < 0) throw std::runtime_error(where + ": " + what);
}

// RAII for HDF5 ids.
struct Handle {
  hid_t id;
  herr_t (*close)(hid_t);
  ~Handle() {
    if (id >= 0) close(id);
  }
};

std::vector<hsize_t> dims_of(hid_t dataset) {
  Handle space{H5Dget_space(dataset), H5Sclose};
  const int rank = H5Sget_simple_extent_ndims(space.id);
  std::vector<hsize_t> dims(static_cast<std::size_t>(std::max(rank, 0)));
  H5Sget_simple_extent_dims(space.id, dims.data(), nullptr);
  return dims;
}

bool exists(hid_t file, const std::string& name) {
  return H5Lexists(file, name.c_str(), H5P_DEFAULT) > 0;
}

// Reads `count` rows of `row_elems` elements starting at row `start` of a 1-D or 2-D dataset.
void read_rows(hid_t file, const std::string& name, hsize_t start, hsize_t count, hsize_t row_elems,
               hid_t mem_type, void* out, const std::string& where) {
  Handle dataset{H5Dopen2(file, name.c_str(), H5P_DEFAULT), H5Dclose};
  check(static_cast<herr_t>(dataset.id), where, "cannot open dataset " + name);
  Handle space{H5Dget_space(dataset.id), H5Sclose};
  const int rank = H5Sget_simple_extent_ndims(space.id);
  std::vector<hsize_t> offset{start}, extent{count};
  if (rank == 1) {
    offset[0] = start * row_elems;
    extent[0] = count * row_elems;
  } else {
    offset.push_back(0);
    extent.push_back(row_elems);
  }
  check(H5Sselect_hyperslab(space.id, H5S_SELECT_SET, offset.data(), nullptr, extent.data(), nullptr), where,
        "bad selection in " + name);
  hsize_t total = count * row_elems;
  Handle memory{H5Screate_simple(1, &total, nullptr), H5Sclose};
  check(H5Dread(dataset.id, mem_type, memory.id, space.id, H5P_DEFAULT, out), where, "cannot read " + name);
}

void write_dataset(hid_t file, const std::string& name, const std::vector<hsize_t>& dims, hid_t file_type,
                   hid_t mem_type, const void* data, const std::string& where) {
  Handle space{H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose};
  Handle lcpl{H5Pcreate(H5P_LINK_CREATE), H5Pclose};
  H5Pset_create_intermediate_group(lcpl.id, 1);
  Handle dataset{H5Dcreate2(file, name.c_str(), file_type, space.id, lcpl.id, H5P_DEFAULT, H5P_DEFAULT), H5Dclose};
  check(static_cast<herr_t>(dataset.id), where, "cannot create dataset " + name);
  check(H5Dwrite(dataset.id, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), where, "cannot write " + name);
}

void write_int_attribute(hid_t file, const char* name, std::int64_t value, const std::string& where) {
  Handle space{H5Screate(H5S_SCALAR), H5Sclose};
  Handle attr{H5Acreate2(file, name, H5T_STD_I64LE, space.id, H5P_DEFAULT, H5P_DEFAULT), H5Aclose};
  check(H5Awrite(attr.id, H5T_NATIVE_INT64, &value), where, std::string("cannot write ") + name);
}

// The root attribute `name`, or `fallback` where the file has none (files of earlier versions).
std::int64_t read_int_attribute(hid_t file, const char* name, std::int64_t fallback, const std::string& where) {
  if (H5Aexists(file, name) <= 0) return fallback;
  Handle attr{H5Aopen(file, name, H5P_DEFAULT), H5Aclose};
  std::int64_t value = fallback;
  check(H5Aread(attr.id, H5T_NATIVE_INT64, &value), where, std::string("cannot read ") + name);
  return value;
}

// Creates the file under a temporary name and renames it when complete. Rows record the id
// they are padded with (`pad_id`; -1 for a token stream, which has no padding).
template <typename Fill>
void write_file(const std::string& path, std::int64_t vocab_size, std::int64_t pad_id, Fill fill) {
  static Silence silence;
  const std::string temp = path + ".tmp";
  {
    Handle file{H5Fcreate(temp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose};
    check(static_cast<herr_t>(file.id), path, "cannot create HDF5 file");
    fill(file.id);
    write_int_attribute(file.id, "vocab_size", vocab_size, path);
    if (pad_id >= 0) write_int_attribute(file.id, "pad_id", pad_id, path);
  }
  std::filesystem::rename(temp, path);
  checkpoint::fsync_directory(std::filesystem::path(path).parent_path().string());
}

}  // namespace

Hdf5Dataset::Hdf5Dataset(const std::string& path, const std::string& split, std::int64_t seq_len)
    : path_(path), split_(split), seq_len_(seq_len) {
  static Silence silence;
  if (!std::filesystem::is_regular_file(path)) throw std::runtime_error(path + ": data file does not exist");
  if (H5Fis_hdf5(path.c_str()) <= 0) throw std::runtime_error(path + ": not an HDF5 file (corrupt?)");
  file_ = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (file_ < 0) throw std::runtime_error(path + ": cannot open HDF5 file (corrupt?)");
  try {
    vocab_size_ = read_int_attribute(file_, "vocab_size", 0, path);
    pad_id_ = read_int_attribute(file_, "pad_id", -1, path);
    const std::string tokens = "/" + split + "/tokens", ids = "/" + split + "/input_ids";
    if (exists(file_, "/" + split) && exists(file_, tokens)) {
      Handle dataset{H5Dopen2(file_, tokens.c_str(), H5P_DEFAULT), H5Dclose};
      check(static_cast<herr_t>(dataset.id), path, "cannot open dataset " + tokens);
      const auto dims = dims_of(dataset.id);
      if (dims.size() != 1) throw std::runtime_error(path + ": dataset " + tokens + " must be 1-D");
      if (seq_len <= 0) throw std::runtime_error(path + ": seq_len must be positive");
      samples_ = static_cast<std::int64_t>(dims[0]) / seq_len;
    } else if (exists(file_, "/" + split) && exists(file_, ids)) {
      classification_ = true;
      Handle dataset{H5Dopen2(file_, ids.c_str(), H5P_DEFAULT), H5Dclose};
      check(static_cast<herr_t>(dataset.id), path, "cannot open dataset " + ids);
      const auto dims = dims_of(dataset.id);
      if (dims.size() != 2) throw std::runtime_error(path + ": dataset " + ids + " must be 2-D");
      samples_ = static_cast<std::int64_t>(dims[0]);
      seq_len_ = static_cast<std::int64_t>(dims[1]);
      token_labels_ = exists(file_, "/" + split + "/lm_labels");
      classification_ = !token_labels_;
      for (const char* other : {"attention_mask", token_labels_ ? "lm_labels" : "labels"})
        if (!exists(file_, "/" + split + "/" + other))
          throw std::runtime_error(path + ": missing dataset /" + split + "/" + other);
      has_type_ids_ = exists(file_, "/" + split + "/token_type_ids");
      packed_ = token_labels_ && exists(file_, "/" + split + "/position_ids");
    } else {
      throw std::runtime_error(path + ": no dataset /" + split + "/tokens or /" + split + "/input_ids");
    }
  } catch (...) {
    H5Fclose(file_);
    throw;
  }
}

namespace {

// Rows are stored right-padded, so the batch's real tokens end at its longest row's length.
void cut_to_longest_row(Batch& batch) {
  const auto width = std::max<std::int64_t>(1, batch.attention_mask.sum(1).max().item<std::int64_t>());
  if (width == batch.input_ids.size(1)) return;
  const auto cut = [width](torch::Tensor& t) {
    if (t.defined() && t.dim() == 2) t = t.narrow(1, 0, width).contiguous();
  };
  for (auto* t : {&batch.input_ids, &batch.attention_mask, &batch.token_type_ids, &batch.labels, &batch.position_ids})
    cut(*t);
}

}  // namespace

Hdf5Dataset::~Hdf5Dataset() {
  if (file_ >= 0) H5Fclose(file_);
}

Batch Hdf5Dataset::read(const std::vector<std::int64_t>& indices) const {
  const auto n = static_cast<std::int64_t>(indices.size());
  Batch batch;
  auto ids = torch::empty({n, seq_len_}, torch::kInt32);
  for (std::int64_t i = 0; i < n; ++i) {
    const auto index = indices[static_cast<std::size_t>(i)];
    if (index < 0 || index >= samples_) throw std::out_of_range(path_ + ": sample index out of range");
    read_rows(file_, "/" + split_ + (classification_ || token_labels_ ? "/input_ids" : "/tokens"), static_cast<hsize_t>(index), 1,
              static_cast<hsize_t>(seq_len_), H5T_NATIVE_INT32, ids[i].data_ptr(), path_);
  }
  batch.input_ids = ids.to(torch::kInt64);
  if (!classification_ && !token_labels_) {
    batch.labels = batch.input_ids;
    batch.tokens = n * seq_len_;
    return batch;
  }
  auto mask = torch::empty({n, seq_len_}, torch::kInt8);
  auto labels = token_labels_ ? torch::empty({n, seq_len_}, torch::kInt32) : torch::empty({n}, torch::kInt64);
  for (std::int64_t i = 0; i < n; ++i) {
    const auto index = static_cast<hsize_t>(indices[static_cast<std::size_t>(i)]);
    read_rows(file_, "/" + split_ + "/attention_mask", index, 1, static_cast<hsize_t>(seq_len_), H5T_NATIVE_INT8,
              mask[i].data_ptr(), path_);
    if (token_labels_)
      read_rows(file_, "/" + split_ + "/lm_labels", index, 1, static_cast<hsize_t>(seq_len_), H5T_NATIVE_INT32,
                labels[i].data_ptr(), path_);
    else
      read_rows(file_, "/" + split_ + "/labels", index, 1, 1, H5T_NATIVE_INT64, labels[i].data_ptr(), path_);
  }
  if (token_labels_) labels = labels.to(torch::kInt64);
  batch.attention_mask = mask.to(torch::kInt64);
  // The optional per-token datasets: type ids (sentence pairs), position ids (packed rows).
  const auto per_token = [&](const char* name, at::ScalarType type, hid_t mem_type) {
    auto values = torch::empty({n, seq_len_}, type);
    for (std::int64_t i = 0; i < n; ++i)
      read_rows(file_, "/" + split_ + "/" + name, static_cast<hsize_t>(indices[static_cast<std::size_t>(i)]), 1,
                static_cast<hsize_t>(seq_len_), mem_type, values[i].data_ptr(), path_);
    return values.to(torch::kInt64);
  };
  if (has_type_ids_) batch.token_type_ids = per_token("token_type_ids", torch::kInt8, H5T_NATIVE_INT8);
  if (packed_) batch.position_ids = per_token("position_ids", torch::kInt32, H5T_NATIVE_INT32);
  batch.labels = labels;
  batch.tokens = batch.attention_mask.sum().item<std::int64_t>();
  if (pad_to_longest_) cut_to_longest_row(batch);
  return batch;
}

void write_token_file(const std::string& path, const std::vector<std::int32_t>& train,
                      const std::vector<std::int32_t>& eval, std::int64_t vocab_size) {
  write_file(path, vocab_size, -1, [&](hid_t file) {
    write_dataset(file, "/train/tokens", {train.size()}, H5T_STD_I32LE, H5T_NATIVE_INT32, train.data(), path);
    write_dataset(file, "/eval/tokens", {eval.size()}, H5T_STD_I32LE, H5T_NATIVE_INT32, eval.data(), path);
  });
}

void write_classification_file(const std::string& path, const LabelledRows& train, const LabelledRows& eval,
                               std::int64_t length, std::int32_t pad_id, std::int64_t vocab_size) {
  write_file(path, vocab_size, pad_id, [&](hid_t file) {
    for (const auto& [split, rows] : {std::pair<std::string, const LabelledRows*>{"train", &train}, {"eval", &eval}}) {
      const auto count = rows->ids.size();
      std::vector<std::int32_t> ids(count * static_cast<std::size_t>(length), pad_id);
      std::vector<std::int8_t> mask(ids.size(), 0), types(ids.size(), 0);
      const bool pairs = !train.type_ids.empty() || !eval.type_ids.empty();
      for (std::size_t r = 0; r < count; ++r)
        for (std::size_t c = 0; c < rows->ids[r].size() && c < static_cast<std::size_t>(length); ++c) {
          ids[r * static_cast<std::size_t>(length) + c] = rows->ids[r][c];
          mask[r * static_cast<std::size_t>(length) + c] = 1;
          if (!rows->type_ids.empty()) types[r * static_cast<std::size_t>(length) + c] = static_cast<std::int8_t>(rows->type_ids[r][c]);
        }
      const std::vector<hsize_t> dims{count, static_cast<hsize_t>(length)};
      write_dataset(file, "/" + split + "/input_ids", dims, H5T_STD_I32LE, H5T_NATIVE_INT32, ids.data(), path);
      write_dataset(file, "/" + split + "/attention_mask", dims, H5T_STD_I8LE, H5T_NATIVE_INT8, mask.data(), path);
      if (pairs)
        write_dataset(file, "/" + split + "/token_type_ids", dims, H5T_STD_I8LE, H5T_NATIVE_INT8, types.data(), path);
      write_dataset(file, "/" + split + "/labels", {count}, H5T_STD_I64LE, H5T_NATIVE_INT64, rows->labels.data(), path);
    }
  });
}

void write_token_labelled_file(const std::string& path, const TokenLabelledRows& train, const TokenLabelledRows& eval,
                               std::int64_t length, std::int32_t pad_id, std::int64_t vocab_size) {
  write_file(path, vocab_size, pad_id, [&](hid_t file) {
    for (const auto& [split, rows] : {std::pair<std::string, const TokenLabelledRows*>{"train", &train}, {"eval", &eval}}) {
      const auto count = rows->ids.size();
      const auto width = static_cast<std::size_t>(length);
      std::vector<std::int32_t> ids(count * width, pad_id), labels(count * width, -100), positions(count * width, 0);
      std::vector<std::int8_t> mask(ids.size(), 0);
      const bool packed = !rows->position_ids.empty();
      for (std::size_t r = 0; r < count; ++r) {
        const auto real = std::min(rows->ids[r].size(), width);
        for (std::size_t c = 0; c < width; ++c) {
          if (c < real) {
            ids[r * width + c] = rows->ids[r][c];
            labels[r * width + c] = rows->labels[r][c];
            mask[r * width + c] = 1;
          }
          if (packed && c < real) positions[r * width + c] = rows->position_ids[r][c];
          else if (packed && c > 0) positions[r * width + c] = positions[r * width + c - 1] + 1;
        }
      }
      const std::vector<hsize_t> dims{count, static_cast<hsize_t>(length)};
      write_dataset(file, "/" + split + "/input_ids", dims, H5T_STD_I32LE, H5T_NATIVE_INT32, ids.data(), path);
      write_dataset(file, "/" + split + "/attention_mask", dims, H5T_STD_I8LE, H5T_NATIVE_INT8, mask.data(), path);
      write_dataset(file, "/" + split + "/lm_labels", dims, H5T_STD_I32LE, H5T_NATIVE_INT32, labels.data(), path);
      if (packed)
        write_dataset(file, "/" + split + "/position_ids", dims, H5T_STD_I32LE, H5T_NATIVE_INT32, positions.data(), path);
    }
  });
}

}  // namespace mpitrain::data
