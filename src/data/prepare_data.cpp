// `prepare-data`: text files (causal LM) or JSON lines {"text", "label"} (classification) to HDF5, with an eval split, tokenized by a TextEncoder.
#include "src/data/prepare_data.h"

#include <algorithm>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "runtime/checkpoint/input_file.h"
#include "src/data/hdf5_dataset.h"

namespace mpitrain::data {

namespace fs = std::filesystem;

namespace {

std::vector<fs::path> source_files(const std::string& source, const std::string& extension) {
  if (!fs::exists(source)) throw std::runtime_error(source + ": data source does not exist");
  std::vector<fs::path> files;
  if (fs::is_directory(source)) {
    for (const auto& item : fs::recursive_directory_iterator(source))
      if (item.is_regular_file() && item.path().extension() == extension) files.push_back(item.path());
  } else {
    files.push_back(source);
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) throw std::runtime_error(source + ": no " + extension + " files");
  return files;
}

// Never a plain ifstream: a FIFO named as the source would block it forever.
std::string slurp(const fs::path& path) { return checkpoint::read_regular_file(path.string()); }

// Every non-blank line of the .jsonl files of `source`, parsed (depth-bounded), with the
// "FILE:LINE" its errors name.
void for_each_json_line(const std::string& source,
                        const std::function<void(const nlohmann::json& row, const std::string& where)>& visit) {
  for (const auto& file : source_files(source, ".jsonl")) {
    std::istringstream in(slurp(file));
    std::string line;
    std::int64_t line_number = 0;
    while (std::getline(in, line)) {
      ++line_number;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      const auto where = file.string() + ":" + std::to_string(line_number);
      visit(checkpoint::parse_json(line, where), where);
    }
  }
}

}  // namespace

PrepareReport prepare_text_corpus(const std::string& source, const std::string& output, const TextEncoder& encoder,
                                  int eval_every) {
  std::vector<std::int32_t> train, eval;
  PrepareReport report;
  for (const auto& file : source_files(source, ".txt")) {
    const auto text = slurp(file);
    if (text.empty()) continue;
    auto& split = (eval_every > 0 && report.documents % eval_every == eval_every - 1) ? eval : train;
    const auto ids = encoder.document(text);
    split.insert(split.end(), ids.begin(), ids.end());
    ++report.documents;
  }
  if (train.empty()) throw std::runtime_error(source + ": no text to train on");
  if (eval.empty()) {  // too few documents for a split: hold out the tail of the stream
    const auto cut = train.size() - train.size() / 10;
    eval.assign(train.begin() + static_cast<std::ptrdiff_t>(cut), train.end());
    train.resize(cut);
  }
  if (!fs::path(output).parent_path().empty()) fs::create_directories(fs::path(output).parent_path());
  write_token_file(output, train, eval, encoder.vocab_size());
  report.train_tokens = static_cast<std::int64_t>(train.size());
  report.eval_tokens = static_cast<std::int64_t>(eval.size());
  return report;
}

namespace {

// The label of one line as an id, by the rules of `labels`; throws naming `where`.
std::int64_t label_id(const nlohmann::json& label, const LabelSet& labels, const std::string& where) {
  if (label.is_string()) {
    const auto name = label.get<std::string>();
    if (!labels.label2id.contains(name)) {
      std::string known;
      for (const auto& [key, value] : labels.label2id.items()) known += (known.empty() ? "" : ", ") + key;
      throw std::runtime_error(where + ": label '" + name + "' is not in the model config's label2id" +
                               (known.empty() ? " (it has none: give integer labels, or id2label/label2id)"
                                              : " (" + known + ")"));
    }
    return labels.label2id[name].get<std::int64_t>();
  }
  if (!label.is_number_integer()) throw std::runtime_error(where + ": \"label\" must be an integer or a label name");
  const auto id = label.get<std::int64_t>();
  if (id < 0 || (labels.num_labels > 0 && id >= labels.num_labels))
    throw std::runtime_error(where + ": label " + std::to_string(id) + " is outside the model's " +
                             std::to_string(labels.num_labels) + " labels (0.." + std::to_string(labels.num_labels - 1) + ")");
  return id;
}

}  // namespace

PrepareReport prepare_classification(const std::string& source, const std::string& output, const TextEncoder& encoder,
                                     std::int64_t max_length, int eval_every, const LabelSet& labels) {
  LabelledRows train, eval;
  PrepareReport report;
  bool pairs = false;
  for_each_json_line(source, [&](const nlohmann::json& row, const std::string& where) {
    if (!row.is_object() || !row.contains("text") || !row["text"].is_string() || !row.contains("label"))
      throw std::runtime_error(where + ": needs a string \"text\" and a \"label\"");
    const auto label = label_id(row["label"], labels, where);
    std::string pair;
    const bool has_pair = row.contains("text_pair");
    if (has_pair) {
      if (!row["text_pair"].is_string()) throw std::runtime_error(where + ": \"text_pair\" must be a string");
      pair = row["text_pair"].get<std::string>();
      pairs = true;
    }
    TextEncoder::Row encoded;
    try {
      encoded = encoder.row(row["text"].get<std::string>(), has_pair ? &pair : nullptr, max_length);
    } catch (const std::runtime_error& e) {
      throw std::runtime_error(where + ": " + e.what());
    }
    auto& split = (eval_every > 0 && report.documents % eval_every == eval_every - 1) ? eval : train;
    split.ids.push_back(std::move(encoded.ids));
    split.type_ids.push_back(std::move(encoded.type_ids));
    split.labels.push_back(label);
    ++report.documents;
  });
  if (train.ids.empty() || eval.ids.empty()) throw std::runtime_error(source + ": too few rows for a train/eval split");
  // Type ids are kept only where some row is a pair (else they are all 0 and need no storage).
  if (!pairs) train.type_ids.clear(), eval.type_ids.clear();
  if (!fs::path(output).parent_path().empty()) fs::create_directories(fs::path(output).parent_path());
  write_classification_file(output, train, eval, max_length, encoder.pad_id(), encoder.vocab_size());
  report.train_rows = static_cast<std::int64_t>(train.ids.size());
  report.eval_rows = static_cast<std::int64_t>(eval.ids.size());
  return report;
}

PrepareReport prepare_prompt_completion(const std::string& source, const std::string& output, const TextEncoder& encoder,
                                        std::int64_t max_length, int eval_every, bool completion_only_loss) {
  TokenLabelledRows train, eval;
  PrepareReport report;
  const auto width = static_cast<std::size_t>(max_length);
  for_each_json_line(source, [&](const nlohmann::json& row, const std::string& where) {
    if (!row.is_object() || !row.contains("prompt") || !row["prompt"].is_string() || !row.contains("completion") ||
        !row["completion"].is_string())
      throw std::runtime_error(where + ": needs a string \"prompt\" and a string \"completion\"");
    if (row["completion"].get<std::string>().empty()) throw std::runtime_error(where + ": the completion is empty");
    auto prompt = encoder.prompt(row["prompt"].get<std::string>());
    auto completion = encoder.completion(row["completion"].get<std::string>());
    if (completion.size() > width) completion.resize(width);  // longer than a whole row by itself
    if (prompt.size() + completion.size() > width)  // the oldest prompt tokens go
      prompt.erase(prompt.begin(), prompt.begin() + static_cast<std::ptrdiff_t>(prompt.size() + completion.size() - width));
    std::vector<std::int32_t> ids = prompt, labels(prompt.size(), -100);
    if (!completion_only_loss) labels = prompt;
    ids.insert(ids.end(), completion.begin(), completion.end());
    labels.insert(labels.end(), completion.begin(), completion.end());
    auto& split = (eval_every > 0 && report.documents % eval_every == eval_every - 1) ? eval : train;
    split.ids.push_back(std::move(ids));
    split.labels.push_back(std::move(labels));
    ++report.documents;
  });
  if (train.ids.empty() || eval.ids.empty()) throw std::runtime_error(source + ": too few rows for a train/eval split");
  if (!fs::path(output).parent_path().empty()) fs::create_directories(fs::path(output).parent_path());
  write_token_labelled_file(output, train, eval, max_length, encoder.pad_id(), encoder.vocab_size());
  report.train_rows = static_cast<std::int64_t>(train.ids.size());
  report.eval_rows = static_cast<std::int64_t>(eval.ids.size());
  return report;
}

}  // namespace mpitrain::data
