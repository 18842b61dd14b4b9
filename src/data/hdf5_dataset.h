// Training data in HDF5: a token stream cut into seq_len windows (causal LM) or rows with labels (classification).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace mpitrain::data {

// File layout, written by `mpitrain prepare-data`:
//   /<split>/tokens          int32 [n]            causal LM token stream (documents joined by </s>)
//   /<split>/input_ids       int32 [rows, len]    classification
//   /<split>/attention_mask  int8  [rows, len]
//   /<split>/token_type_ids  int8  [rows, len]    sentence pairs only (0 first, 1 second)
//   /<split>/lm_labels       int32 [rows, len]    prompt/completion rows: each position's target, -100 where none
//   /<split>/position_ids    int32 [rows, len]    packed prompt/completion rows: each example numbered from 0
//   /<split>/labels          int64 [rows]
//   attributes vocab_size and (rows) pad_id on the root group
struct Batch {
  torch::Tensor input_ids;       // [b, len] int64
  torch::Tensor attention_mask;  // [b, len] int64 (undefined for packed LM windows: all real)
  torch::Tensor token_type_ids;  // [b, len] int64 for sentence pairs; undefined otherwise (all 0)
  torch::Tensor labels;          // [b, len] for causal LM (= input_ids), [b] for classification
  torch::Tensor position_ids;    // [b, len] int64 for packed rows (each example from 0); undefined otherwise
  std::int64_t tokens = 0;       // real tokens in the batch
};

class Hdf5Dataset {
 public:
  // Throws std::runtime_error naming the file and the dataset for anything missing or malformed.
  Hdf5Dataset(const std::string& path, const std::string& split, std::int64_t seq_len);
  ~Hdf5Dataset();
  Hdf5Dataset(const Hdf5Dataset&) = delete;
  Hdf5Dataset& operator=(const Hdf5Dataset&) = delete;

  bool is_classification() const { return classification_; }
  // Prompt/completion rows: causal-LM rows whose labels say which tokens are targets.
  bool has_token_labels() const { return token_labels_; }
  // Rows that each hold several prompt/completion examples, with their position ids.
  bool is_packed() const { return packed_; }
  std::int64_t size() const { return samples_; }  // windows or rows
  std::int64_t vocab_size() const { return vocab_size_; }
  // The id rows are padded with; -1 for a token stream (or a file that does not say).
  std::int64_t pad_id() const { return pad_id_; }
  std::int64_t sequence_length() const { return seq_len_; }  // seq_len, or a classification row's width
  const std::string& path() const { return path_; }

  // Reads only the samples named (one hyperslab each), in the order given. Rows (classification,
  // prompt/completion) come padded to the longest row of the batch unless told otherwise, as
  // transformers' DataCollatorWithPadding pads: rows are stored padded on the right to the
  // file's width, so the batch is that width cut after its last real token.
  Batch read(const std::vector<std::int64_t>& indices) const;
  // false: every batch keeps the file's whole width (data.pad_to_max_length).
  void set_pad_to_longest(bool on) { pad_to_longest_ = on; }

 private:
  std::string path_, split_;
  std::int64_t seq_len_ = 0, samples_ = 0, vocab_size_ = 0, pad_id_ = -1;
  bool classification_ = false, has_type_ids_ = false, token_labels_ = false, packed_ = false, pad_to_longest_ = true;
  long long file_ = -1;  // hid_t, kept opaque so HDF5's headers stay out of this one
};

// Writes a causal-LM file: one token stream per split.
void write_token_file(const std::string& path, const std::vector<std::int32_t>& train,
                      const std::vector<std::int32_t>& eval, std::int64_t vocab_size);

// Writes a classification file: rows padded to `length` with `pad_id`.
struct LabelledRows {
  std::vector<std::vector<std::int32_t>> ids;
  std::vector<std::vector<std::int32_t>> type_ids;  // empty, or one per row (sentence pairs)
  std::vector<std::int64_t> labels;
};
void write_classification_file(const std::string& path, const LabelledRows& train, const LabelledRows& eval,
                               std::int64_t length, std::int32_t pad_id, std::int64_t vocab_size);

// Writes prompt/completion rows: padded to `length` with `pad_id`; labels -100 where not a target.
// Packed rows carry their tokens' position ids (the padding's continue the last example's).
struct TokenLabelledRows {
  std::vector<std::vector<std::int32_t>> ids, labels;
  std::vector<std::vector<std::int32_t>> position_ids;  // empty, or one per row (packed)
};
void write_token_labelled_file(const std::string& path, const TokenLabelledRows& train, const TokenLabelledRows& eval,
                               std::int64_t length, std::int32_t pad_id, std::int64_t vocab_size);

}  // namespace mpitrain::data
