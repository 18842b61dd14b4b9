// The post-processors of tokenizer.json (TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel, Sequence): special tokens and type ids around one sequence or a pair.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "src/tokenizers/component_json.h"

namespace mpitrain::tokenizers {

struct Encoding {
  std::vector<int> ids;
  std::vector<int> type_ids;  // 0 for the first sequence, 1 for the second of a pair
};

// Joins `first` and `second` (if any) as the tokenizer's post-processor says when
// `add_special_tokens`; without it (or without a post-processor) the two in order.
class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  virtual Encoding process(Encoding first, std::optional<Encoding> second) const = 0;
};

Encoding join_plain(Encoding first, std::optional<Encoding> second);

// Null JSON: none. `token_id` resolves a special token's content to its id (a TokenizerError
// when it has none).
std::unique_ptr<PostProcessor> make_post_processor(const ComponentJson& component,
                                                   const std::function<int(const std::string&)>& token_id);

}  // namespace mpitrain::tokenizers
