// Splitting special-token texts out of raw text before the model tokenizer runs
// (llama.cpp's tokenizer_st_partition). llama.cpp takes the special tokens one at a time, longest
// first, and cuts every remaining raw stretch at that token's leftmost non-overlapping
// occurrences. The same result comes here from one trie scan that lists every occurrence of
// every special token, then a pass over them in that order, accepting an occurrence only if all
// its bytes are still raw. That costs O(text * trie depth) instead of O(text * special tokens).
#include <algorithm>
#include <iterator>
#include <map>

#include "model/tokenizer_vocab.hpp"

namespace llmd::model::detail {
namespace {

bool is_c_space(char c) {
  return c == ' ' || (c >= '\t' && c <= '\r');
}

struct Occurrence {
  int32_t rank;
  uint32_t start;
};

// The parts of the text no longer raw: [begin, end) -> token, or -1 for whitespace a token's
// lstrip/rstrip removed.
class Taken {
 public:
  bool is_free(size_t begin, size_t end) const {
    auto it = spans_.upper_bound(begin);
    if (it != spans_.begin() && std::prev(it)->second.end > begin) return false;
    return it == spans_.end() || it->first >= end;
  }
  void take(size_t begin, size_t end, int32_t token) { spans_.emplace(begin, Span{end, token}); }

  // Raw stretches and tokens, in text order.
  void fragments(size_t text_size, std::vector<Fragment>& out) const {
    size_t pos = 0;
    for (const auto& [begin, span] : spans_) {
      if (begin > pos) out.push_back({-1, pos, begin});
      if (span.token >= 0) out.push_back({span.token, begin, span.end});
      pos = span.end;
    }
    if (pos < text_size) out.push_back({-1, pos, text_size});
  }

 private:
  struct Span {
    size_t end;
    int32_t token;
  };
  std::map<size_t, Span> spans_;
};

}  // namespace

void partition_special(const Vocab& v, std::string_view text, bool parse_special,
                       std::vector<Fragment>& out) {
  out.clear();
  if (text.empty()) return;
  const SpecialTrie& trie = v.special;

  std::vector<Occurrence> occ;
  for (size_t p = 0; p < text.size(); ++p) {
    if (!trie.first[static_cast<unsigned char>(text[p])]) continue;
    int32_t node = 0;
    for (size_t q = p; q < text.size(); ++q) {
      node = trie.child(node, static_cast<unsigned char>(text[q]));
      if (node < 0) break;
      const int32_t rank = trie.node_rank[node];
      if (rank < 0) continue;
      // Without parse_special only user-defined tokens are split out.
      const uint32_t a = v.attr[trie.order[rank]];
      if (!parse_special && (a & (kAttrControl | kAttrUnknown))) continue;
      occ.push_back({rank, static_cast<uint32_t>(p)});
    }
  }
  if (occ.empty()) {
    out.push_back({-1, 0, text.size()});
    return;
  }
  std::sort(occ.begin(), occ.end(), [](const Occurrence& a, const Occurrence& b) {
    return a.rank != b.rank ? a.rank < b.rank : a.start < b.start;
  });

  Taken taken;
  for (const Occurrence& o : occ) {
    const int32_t id = trie.order[o.rank];
    const size_t begin = o.start, end = begin + v.text[id].size();
    if (!taken.is_free(begin, end)) continue;
    const uint32_t a = v.attr[id];
    if (a & kAttrLstrip) {
      size_t s = begin;
      while (s > 0 && is_c_space(text[s - 1]) && taken.is_free(s - 1, s)) --s;
      if (s < begin) taken.take(s, begin, -1);
    }
    if (a & kAttrRstrip) {
      size_t e = end;
      while (e < text.size() && is_c_space(text[e]) && taken.is_free(e, e + 1)) ++e;
      if (e > end) taken.take(end, e, -1);
    }
    taken.take(begin, end, id);
  }
  taken.fragments(text.size(), out);
}

}  // namespace llmd::model::detail
