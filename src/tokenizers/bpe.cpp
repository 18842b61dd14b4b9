// The BPE model: a word's characters (or their byte fallbacks, or unk) merged pair by pair in merge-rank order, leftmost first, as the tokenizers library merges them.
#include <cstdio>
#include <queue>

#include "src/tokenizers/models.h"
#include "src/tokenizers/unicode_text.h"

namespace mpitrain::tokenizers {

namespace {

std::uint64_t pair_key(int left, int right) {
  return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) | static_cast<std::uint32_t>(right);
}

class Bpe : public Model {
 public:
  explicit Bpe(const ComponentJson& c) : Model(Vocabulary::from_json(c, "vocab")) {
    if (c.json().contains("dropout") && !c.json()["dropout"].is_null() && c.json()["dropout"] != 0.0)
      c.fail("dropout is not supported (encoding would not be deterministic)");
    prefix_ = c.string_or("continuing_subword_prefix", "");
    suffix_ = c.string_or("end_of_word_suffix", "");
    byte_fallback_ = c.bool_or("byte_fallback", false);
    fuse_unk_ = c.bool_or("fuse_unk", false);
    ignore_merges_ = c.bool_or("ignore_merges", false);
    const auto unk = c.string_or("unk_token", "");
    if (!unk.empty()) {
      unk_id_ = vocabulary_.id(unk);
      if (!unk_id_) c.fail("unk_token '" + unk + "' is not in the vocabulary");
    }
    read_merges(c);
    if (byte_fallback_)
      for (int b = 0; b < 256; ++b) {
        char name[8];
        std::snprintf(name, sizeof name, "<0x%02X>", b);
        byte_ids_[b] = vocabulary_.id(name).value_or(-1);
      }
  }

  void tokenize(const std::string& word, std::vector<int>& ids) const override {
    if (word.empty()) return;
    if (ignore_merges_)
      if (const auto whole = vocabulary_.id(word)) {
        ids.push_back(*whole);
        return;
      }
    auto symbols = initial_symbols(word);
    merge_all(symbols);
    for (const auto& s : symbols)
      if (s.alive) ids.push_back(s.id);
  }

 private:
  struct Symbol {
    int id;
    int prev, next;
    bool alive = true;
  };
  struct Merge {
    int rank, new_id;
  };

  void read_merges(const ComponentJson& c) {
    const auto it = c.json().find("merges");
    if (it == c.json().end() || it->is_null()) return;
    if (!it->is_array()) c.fail("'merges' must be an array");
    merges_.reserve(it->size());
    int rank = 0;
    for (const auto& m : *it) {
      std::string left, right;
      if (m.is_string()) {  // "a b"
        const auto text = m.get<std::string>();
        const auto space = text.find(' ');
        if (space == std::string::npos || text.find(' ', space + 1) != std::string::npos)
          c.fail("merge " + std::to_string(rank) + " '" + text + "' is not two tokens separated by one space");
        left = text.substr(0, space);
        right = text.substr(space + 1);
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {  // ["a", "b"]
        left = m[0].get<std::string>();
        right = m[1].get<std::string>();
      } else {
        c.fail("merge " + std::to_string(rank) + " is neither \"a b\" nor [\"a\", \"b\"]");
      }
      const auto a = vocabulary_.id(left), b = vocabulary_.id(right);
      // The right part loses its continuation prefix in the merged token (as the library does).
      const auto merged = vocabulary_.id(left + right.substr(std::min(prefix_.size(), right.size())));
      if (!a || !b || !merged)
        c.fail("merge " + std::to_string(rank) + " (" + left + " " + right + ") names a token not in the vocabulary");
      merges_[pair_key(*a, *b)] = {rank, *merged};  // a repeated pair: the later rank, as the library's map keeps
      ++rank;
    }
  }

  std::vector<Symbol> initial_symbols(const std::string& word) const {
    std::vector<Symbol> symbols;
    symbols.reserve(word.size());
    const auto add = [&](int id) {
      const int index = static_cast<int>(symbols.size());
      symbols.push_back({id, index - 1, index + 1});
    };
    int pending_unk = -1;  // an unk not added yet (fuse_unk: one for a run of unknown characters)
    std::string piece;
    for (std::size_t i = 0; i < word.size();) {
      const std::size_t begin = i;
      next_code_point(word, i);
      piece.assign(word, begin, i - begin);
      if (begin > 0) piece.insert(0, prefix_);
      if (i == word.size()) piece += suffix_;
      if (const auto id = vocabulary_.id(piece)) {
        if (pending_unk >= 0) add(pending_unk), pending_unk = -1;
        add(*id);
        continue;
      }
      if (byte_fallback_) {
        bool all = true;
        for (const char b : piece) all = all && byte_ids_[static_cast<unsigned char>(b)] >= 0;
        if (all) {  // a pending unk stays pending here, as in the library
          for (const char b : piece) add(byte_ids_[static_cast<unsigned char>(b)]);
          continue;
        }
      }
      if (!unk_id_) continue;  // no unk token: the character is dropped, as the library drops it
      if (pending_unk >= 0 && !fuse_unk_) add(pending_unk);
      pending_unk = *unk_id_;
    }
    if (pending_unk >= 0) add(pending_unk);
    if (!symbols.empty()) symbols.back().next = -1;
    return symbols;
  }

  // Lowest rank first; of equal ranks the leftmost.
  struct Candidate {
    int rank, position, new_id;
    bool operator<(const Candidate& other) const {
      return rank != other.rank ? rank > other.rank : position > other.position;
    }
  };

  const Merge* merge_of(int left, int right) const {
    const auto it = merges_.find(pair_key(left, right));
    return it == merges_.end() ? nullptr : &it->second;
  }

  void merge_all(std::vector<Symbol>& symbols) const {
    std::priority_queue<Candidate> queue;
    for (std::size_t i = 0; i + 1 < symbols.size(); ++i)
      if (const auto* m = merge_of(symbols[i].id, symbols[i + 1].id))
        queue.push({m->rank, static_cast<int>(i), m->new_id});
    while (!queue.empty()) {
      const auto top = queue.top();
      queue.pop();
      auto& left = symbols[top.position];
      if (!left.alive || left.next < 0) continue;
      auto& right = symbols[left.next];
      // Stale: the pair changed since this candidate was queued.
      const auto* m = merge_of(left.id, right.id);
      if (!m || m->new_id != top.new_id) continue;
      left.id = top.new_id;
      right.alive = false;
      left.next = right.next;
      if (right.next >= 0) symbols[right.next].prev = top.position;
      if (left.prev >= 0)
        if (const auto* before = merge_of(symbols[left.prev].id, left.id))
          queue.push({before->rank, left.prev, before->new_id});
      if (left.next >= 0)
        if (const auto* after = merge_of(left.id, symbols[left.next].id))
          queue.push({after->rank, top.position, after->new_id});
    }
  }

  std::unordered_map<std::uint64_t, Merge> merges_;
  std::string prefix_, suffix_;
  bool byte_fallback_ = false, fuse_unk_ = false, ignore_merges_ = false;
  std::optional<int> unk_id_;
  int byte_ids_[256] = {};
};

}  // namespace

std::unique_ptr<Model> make_bpe_model(const ComponentJson& c) { return std::make_unique<Bpe>(c); }

}  // namespace mpitrain::tokenizers
