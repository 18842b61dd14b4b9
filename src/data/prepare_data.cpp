// `prepare-data`: text files (causal LM) or JSON lines {"text", "label"} (classification) to HDF5, with an eval split, tokenized by a TextEncoder.
#include "src/data/prepare_data.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "runtime/checkpoint/input_file.h"
#include "src/data/hdf5_dataset.h"
#include "src/data/packing.h"

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

struct JsonLine {
  std::string text, where;  // the line, and the "FILE:LINE" its errors name
};

// Every non-blank line of the .jsonl files of `source`, unparsed: each is parsed (depth-bounded)
// by the rank that encodes it.
std::vector<JsonLine> json_lines(const std::string& source) {
  std::vector<JsonLine> lines;
  for (const auto& file : source_files(source, ".jsonl")) {
    std::istringstream in(slurp(file));
    std::string line;
    std::int64_t line_number = 0;
    while (std::getline(in, line)) {
      ++line_number;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      lines.push_back({line, file.string() + ":" + std::to_string(line_number)});
    }
  }
  return lines;
}

void create_parent_directory(const std::string& output) {
  if (!fs::path(output).parent_path().empty()) fs::create_directories(fs::path(output).parent_path());
}

// Every `eval_every`-th document (counted from 1) is held out for eval.
bool is_eval(const PrepareReport& report, int eval_every) {
  return eval_every > 0 && report.documents % eval_every == eval_every - 1;
}

}  // namespace

PrepareReport prepare_text_corpus(const std::string& source, const std::string& output, const TextEncoder& encoder,
                                  int eval_every, const EncodingShare& share) {
  const auto files = source_files(source, ".txt");
  const auto documents = share.encode_all(files.size(), [&](std::size_t i) {
    const auto text = slurp(files[i]);
    return text.empty() ? EncodedDocument{} : EncodedDocument{{encoder.document(text)}};
  });
  PrepareReport report;
  if (!share.writes()) return report;
  std::vector<std::int32_t> train, eval;
  for (const auto& document : documents) {
    if (document.lists.empty()) continue;  // an empty file
    auto& split = is_eval(report, eval_every) ? eval : train;
    split.insert(split.end(), document.lists[0].begin(), document.lists[0].end());
    ++report.documents;
  }
  if (train.empty()) throw std::runtime_error(source + ": no text to train on");
  if (eval.empty()) {  // too few documents for a split: hold out the tail of the stream
    const auto cut = train.size() - train.size() / 10;
    eval.assign(train.begin() + static_cast<std::ptrdiff_t>(cut), train.end());
    train.resize(cut);
  }
  create_parent_directory(output);
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

namespace {

// One classification line: its row (ids, and type ids for a sentence pair) and label id.
EncodedDocument encode_classification_line(const JsonLine& line, const TextEncoder& encoder, std::int64_t max_length,
                                           const LabelSet& labels) {
  const auto row = checkpoint::parse_json(line.text, line.where);
  if (!row.is_object() || !row.contains("text") || !row["text"].is_string() || !row.contains("label"))
    throw std::runtime_error(line.where + ": needs a string \"text\" and a \"label\"");
  EncodedDocument document;
  document.label = label_id(row["label"], labels, line.where);
  std::string pair;
  const bool has_pair = row.contains("text_pair");
  if (has_pair) {
    if (!row["text_pair"].is_string()) throw std::runtime_error(line.where + ": \"text_pair\" must be a string");
    pair = row["text_pair"].get<std::string>();
  }
  try {
    auto encoded = encoder.row(row["text"].get<std::string>(), has_pair ? &pair : nullptr, max_length);
    document.lists.push_back(std::move(encoded.ids));
    if (has_pair) document.lists.push_back(std::move(encoded.type_ids));  // a row's type ids are all 0 otherwise
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(line.where + ": " + e.what());
  }
  return document;
}

}  // namespace

PrepareReport prepare_classification(const std::string& source, const std::string& output, const TextEncoder& encoder,
                                     std::int64_t max_length, int eval_every, const LabelSet& labels,
                                     const EncodingShare& share) {
  const auto lines = json_lines(source);
  const auto documents = share.encode_all(lines.size(), [&](std::size_t i) {
    return encode_classification_line(lines[i], encoder, max_length, labels);
  });
  PrepareReport report;
  if (!share.writes()) return report;
  LabelledRows train, eval;
  bool pairs = false;
  for (const auto& document : documents) {
    auto& split = is_eval(report, eval_every) ? eval : train;
    const auto& ids = document.lists[0];
    pairs = pairs || document.lists.size() > 1;
    split.ids.push_back(ids);
    split.type_ids.push_back(document.lists.size() > 1 ? document.lists[1] : std::vector<std::int32_t>(ids.size(), 0));
    split.labels.push_back(document.label);
    ++report.documents;
  }
  if (train.ids.empty() || eval.ids.empty()) throw std::runtime_error(source + ": too few rows for a train/eval split");
  // Type ids are kept only where some row is a pair (else they are all 0 and need no storage).
  if (!pairs) train.type_ids.clear(), eval.type_ids.clear();
  create_parent_directory(output);
  write_classification_file(output, train, eval, max_length, encoder.pad_id(), encoder.vocab_size());
  report.train_rows = static_cast<std::int64_t>(train.ids.size());
  report.eval_rows = static_cast<std::int64_t>(eval.ids.size());
  return report;
}

namespace {

// One prompt/completion line: its ids and their targets (-100 where none).
EncodedDocument encode_prompt_completion_line(const JsonLine& line, const TextEncoder& encoder, std::size_t width,
                                              bool completion_only_loss) {
  const auto row = checkpoint::parse_json(line.text, line.where);
  if (!row.is_object() || !row.contains("prompt") || !row["prompt"].is_string() || !row.contains("completion") ||
      !row["completion"].is_string())
    throw std::runtime_error(line.where + ": needs a string \"prompt\" and a string \"completion\"");
  if (row["completion"].get<std::string>().empty()) throw std::runtime_error(line.where + ": the completion is empty");
  auto prompt = encoder.prompt(row["prompt"].get<std::string>());
  auto completion = encoder.completion(row["completion"].get<std::string>());
  if (completion.size() > width) completion.resize(width);  // longer than a whole row by itself
  if (prompt.size() + completion.size() > width)  // the oldest prompt tokens go
    prompt.erase(prompt.begin(), prompt.begin() + static_cast<std::ptrdiff_t>(prompt.size() + completion.size() - width));
  std::vector<std::int32_t> ids = prompt, labels(prompt.size(), -100);
  if (!completion_only_loss) labels = prompt;
  ids.insert(ids.end(), completion.begin(), completion.end());
  labels.insert(labels.end(), completion.begin(), completion.end());
  return EncodedDocument{{std::move(ids), std::move(labels)}};
}

}  // namespace

PrepareReport prepare_prompt_completion(const std::string& source, const std::string& output, const TextEncoder& encoder,
                                        std::int64_t max_length, int eval_every, const PromptCompletionOptions& options,
                                        const EncodingShare& share) {
  const auto lines = json_lines(source);
  const auto documents = share.encode_all(lines.size(), [&](std::size_t i) {
    return encode_prompt_completion_line(lines[i], encoder, static_cast<std::size_t>(max_length),
                                         options.completion_only_loss);
  });
  PrepareReport report;
  if (!share.writes()) return report;
  TokenLabelledRows train, eval;
  for (const auto& document : documents) {
    auto& split = is_eval(report, eval_every) ? eval : train;
    split.ids.push_back(document.lists[0]);
    split.labels.push_back(document.lists[1]);
    ++report.documents;
  }
  if (train.ids.empty() || eval.ids.empty()) throw std::runtime_error(source + ": too few rows for a train/eval split");
  if (options.packing) {
    train = pack_examples(train, static_cast<std::size_t>(max_length));
    eval = pack_examples(eval, static_cast<std::size_t>(max_length));
  }
  create_parent_directory(output);
  write_token_labelled_file(output, train, eval, max_length, encoder.pad_id(), encoder.vocab_size());
  report.train_rows = static_cast<std::int64_t>(train.ids.size());
  report.eval_rows = static_cast<std::int64_t>(eval.ids.size());
  return report;
}

}  // namespace mpitrain::data
