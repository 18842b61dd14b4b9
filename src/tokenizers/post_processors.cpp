// The post-processors of tokenizer.json (TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel, Sequence): special tokens and type ids around one sequence or a pair.
#include "src/tokenizers/post_processors.h"

namespace mpitrain::tokenizers {

Encoding join_plain(Encoding first, std::optional<Encoding> second) {
  if (second) {
    first.ids.insert(first.ids.end(), second->ids.begin(), second->ids.end());
    first.type_ids.insert(first.type_ids.end(), second->type_ids.begin(), second->type_ids.end());
  }
  return first;
}

namespace {

void append(Encoding& out, int id, int type_id) {
  out.ids.push_back(id);
  out.type_ids.push_back(type_id);
}
void append(Encoding& out, const Encoding& part, std::optional<int> type_id = std::nullopt) {
  out.ids.insert(out.ids.end(), part.ids.begin(), part.ids.end());
  if (type_id) out.type_ids.insert(out.type_ids.end(), part.ids.size(), *type_id);
  else out.type_ids.insert(out.type_ids.end(), part.type_ids.begin(), part.type_ids.end());
}

// ["[CLS]", 2]: a special token and its id, as BertProcessing and RobertaProcessing give them.
int special_id(const ComponentJson& c, const char* key) {
  const auto it = c.json().find(key);
  if (it == c.json().end() || !it->is_array() || it->size() != 2 || !(*it)[0].is_string() || !(*it)[1].is_number_integer())
    c.fail(std::string("'") + key + "' must be [token, id]");
  return (*it)[1].get<int>();
}

// BertProcessing: [CLS] A [SEP] (B [SEP]), type ids 0 then 1 for the pair's part.
// RobertaProcessing: <s> A </s> (</s> B </s>), every type id 0.
class ClsSepProcessing : public PostProcessor {
 public:
  ClsSepProcessing(const ComponentJson& c, bool roberta)
      : cls_(special_id(c, "cls")), sep_(special_id(c, "sep")), roberta_(roberta) {}
  Encoding process(Encoding first, std::optional<Encoding> second) const override {
    Encoding out;
    append(out, cls_, 0);
    append(out, first, 0);
    append(out, sep_, 0);
    if (second) {
      const int type_id = roberta_ ? 0 : 1;
      if (roberta_) append(out, sep_, 0);
      append(out, *second, type_id);
      append(out, sep_, type_id);
    }
    return out;
  }

 private:
  int cls_, sep_;
  bool roberta_;
};

// "single" and "pair" templates of {"SpecialToken": {id, type_id}} and {"Sequence": {id: A|B, type_id}}.
class TemplateProcessing : public PostProcessor {
 public:
  TemplateProcessing(const ComponentJson& c, const std::function<int(const std::string&)>& token_id) {
    const auto specials = c.json().find("special_tokens");
    if (specials != c.json().end() && !specials->is_object()) c.fail("'special_tokens' must be an object");
    const auto ids_of = [&](const std::string& name) {
      std::vector<int> ids;
      if (specials != c.json().end() && specials->contains(name)) {
        const auto& entry = (*specials)[name];
        if (!entry.contains("ids") || !entry["ids"].is_array()) c.fail("special token '" + name + "' has no 'ids'");
        for (const auto& id : entry["ids"]) ids.push_back(id.get<int>());
      } else {
        ids.push_back(token_id(name));
      }
      return ids;
    };
    single_ = read_template(c, "single", ids_of);
    pair_ = read_template(c, "pair", ids_of);
  }
  Encoding process(Encoding first, std::optional<Encoding> second) const override {
    Encoding out;
    for (const auto& piece : second ? pair_ : single_) {
      if (piece.sequence == 0) append(out, first, piece.type_id);
      else if (piece.sequence == 1 && second) append(out, *second, piece.type_id);
      else
        for (const int id : piece.ids) append(out, id, piece.type_id);
    }
    return out;
  }

 private:
  struct Piece {
    int sequence = -1;  // 0 for A, 1 for B, -1 for a special token
    std::vector<int> ids;
    int type_id = 0;
  };
  template <class IdsOf>
  static std::vector<Piece> read_template(const ComponentJson& c, const char* key, const IdsOf& ids_of) {
    std::vector<Piece> pieces;
    const auto it = c.json().find(key);
    if (it == c.json().end() || !it->is_array()) c.fail(std::string("'") + key + "' must be an array");
    for (const auto& item : *it) {
      Piece p;
      if (item.contains("Sequence")) {
        const auto& s = item["Sequence"];
        const auto id = s.value("id", std::string("A"));
        if (id != "A" && id != "B") c.fail(std::string(key) + ": sequence '" + id + "' is neither A nor B");
        p.sequence = id == "A" ? 0 : 1;
        p.type_id = s.value("type_id", 0);
      } else if (item.contains("SpecialToken")) {
        const auto& s = item["SpecialToken"];
        p.ids = ids_of(s.value("id", std::string()));
        p.type_id = s.value("type_id", 0);
      } else {
        c.fail(std::string(key) + ": a piece is neither Sequence nor SpecialToken");
      }
      pieces.push_back(std::move(p));
    }
    return pieces;
  }

  std::vector<Piece> single_, pair_;
};

// Offsets only (trim_offsets): the ids pass through.
class IdsUnchanged : public PostProcessor {
 public:
  Encoding process(Encoding first, std::optional<Encoding> second) const override {
    return join_plain(std::move(first), std::move(second));
  }
};

class ProcessorSequence : public PostProcessor {
 public:
  ProcessorSequence(const ComponentJson& c, const std::function<int(const std::string&)>& token_id) {
    // ByteLevel steps only trim offsets: left out, so a [ByteLevel, TemplateProcessing] chain
    // (Llama 3's) gives the template both sequences.
    for (std::size_t i = 0; i < c.array_size("processors"); ++i)
      if (auto p = make_post_processor(c.child("processors", i), token_id); p && !dynamic_cast<IdsUnchanged*>(p.get()))
        steps_.push_back(std::move(p));
  }
  Encoding process(Encoding first, std::optional<Encoding> second) const override {
    // The first step joins the pair; later ones see one sequence (as the library chains them).
    if (steps_.empty()) return join_plain(std::move(first), std::move(second));
    Encoding out = steps_.front()->process(std::move(first), std::move(second));
    for (std::size_t i = 1; i < steps_.size(); ++i) out = steps_[i]->process(std::move(out), std::nullopt);
    return out;
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> steps_;
};

}  // namespace

std::unique_ptr<PostProcessor> make_post_processor(const ComponentJson& c,
                                                   const std::function<int(const std::string&)>& token_id) {
  const auto& type = c.type();
  if (type == "BertProcessing") return std::make_unique<ClsSepProcessing>(c, /*roberta=*/false);
  if (type == "RobertaProcessing") return std::make_unique<ClsSepProcessing>(c, /*roberta=*/true);
  if (type == "TemplateProcessing") return std::make_unique<TemplateProcessing>(c, token_id);
  if (type == "ByteLevel") return std::make_unique<IdsUnchanged>();
  if (type == "Sequence") return std::make_unique<ProcessorSequence>(c, token_id);
  c.unsupported();
}

}  // namespace mpitrain::tokenizers
