// SentencePiece BPE as llama.cpp's llm_tokenizer_spm runs it: the text is cut into UTF-8
// characters, then the adjacent pair whose joined text is the highest-scoring token is merged,
// again and again (ties: the leftmost pair). Symbols that end up as no token are emitted as
// byte tokens. Work is O(n log n) through a priority queue with lazy deletion.
#include <queue>

#include "model/tokenizer_vocab.hpp"
#include "model/unicode.hpp"

namespace llmd::model::detail {
namespace {

struct Symbol {
  uint32_t begin;  // byte offset in the text
  uint32_t len;    // 0 once merged into its left neighbour
  int32_t prev;
  int32_t next;
};

struct Bigram {
  float score;
  int32_t left;
  int32_t right;
  uint32_t len;  // both symbols' lengths when queued; a change means the entry is stale
};

struct ByScoreThenLeft {
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

}  // namespace

void encode_spm(const Vocab& v, std::string_view text, std::vector<int32_t>& out) {
  if (text.empty()) return;
  std::vector<Symbol> sym;
  sym.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    const size_t len =
        std::min(unicode::utf8_len_from_lead(static_cast<uint8_t>(text[pos])), text.size() - pos);
    const auto i = static_cast<int32_t>(sym.size());
    sym.push_back({static_cast<uint32_t>(pos), static_cast<uint32_t>(len), i - 1, -1});
    pos += len;
    if (pos < text.size()) sym.back().next = i + 1;
  }

  std::vector<Bigram> storage;
  storage.reserve(sym.size());
  std::priority_queue<Bigram, std::vector<Bigram>, ByScoreThenLeft> queue(ByScoreThenLeft{},
                                                                          std::move(storage));
  auto try_add = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const uint32_t len = sym[left].len + sym[right].len;
    const int32_t id = v.find(text.substr(sym[left].begin, len));
    if (id < 0) return;
    queue.push({v.score[id], left, right, len});
  };
  for (int32_t i = 1; i < static_cast<int32_t>(sym.size()); ++i) try_add(i - 1, i);

  while (!queue.empty()) {
    const Bigram b = queue.top();
    queue.pop();
    Symbol& l = sym[b.left];
    Symbol& r = sym[b.right];
    if (l.len == 0 || r.len == 0 || l.len + r.len != b.len) continue;
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = b.left;
    try_add(l.prev, b.left);
    try_add(b.left, l.next);
  }

  // Every merge produced a token, so only unmerged characters can miss the vocab; llama.cpp's
  // reverse-merge lookup never applies to them and they fall back to bytes (or <unk> when the
  // vocab has no byte tokens either, where llama.cpp would throw).
  for (int32_t i = 0; i >= 0; i = sym[i].next) {
    const std::string_view s = text.substr(sym[i].begin, sym[i].len);
    const int32_t id = v.find(s);
    if (id >= 0) {
      out.push_back(id);
      continue;
    }
    for (unsigned char c : s) {
      const int32_t b = v.spm_byte_token[c];
      if (b >= 0) {
        out.push_back(b);
      } else if (v.unk >= 0) {
        out.push_back(v.unk);
      }
    }
  }
}

}  // namespace llmd::model::detail
