// Byte-level BPE as llama.cpp's llm_tokenizer_bpe runs it: the pre-tokenizer cuts the text into
// words; each word's bytes become one symbol each (GPT-2's byte map makes every byte a
// character); then the adjacent pair with the lowest merge rank is joined (ties: the leftmost),
// again and again. Symbols are token ids, so a merge is one hash lookup on an id pair.
#include <algorithm>

#include "model/tokenizer_vocab.hpp"
#include "model/unicode.hpp"

namespace llmd::model::detail {
namespace {

struct Symbol {
  uint32_t begin;  // byte offset in the word
  uint32_t len;    // bytes; 0 once merged into its left neighbour
  int32_t id;      // token, or -1 when the vocab lacks this text
  int32_t prev;
  int32_t next;
};

struct Bigram {
  int32_t rank;
  int32_t left;
  int32_t right;
  int32_t result;
  uint32_t len;  // both symbols' lengths when queued; a change means the entry is stale
};

struct ByRankThenLeft {
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  }
};

struct Scratch {
  std::vector<uint32_t> cps;
  std::vector<CpRange> words, tmp;
  std::string bytes, mapped;
  std::vector<Symbol> sym;
  std::vector<Bigram> heap;
};

// llama.cpp's last resort for a symbol that is no token: each byte of its byte-mapped text,
// looked up as a one-byte token (in practice only printable ASCII survives; the rest is lost).
void emit_fallback(const Vocab& v, std::string_view raw, std::vector<int32_t>& out) {
  for (unsigned char b : raw) {
    const uint32_t cp = unicode::byte_to_codepoint(b);
    if (cp < 0x80) {
      if (const int32_t id = v.bpe_raw_byte_token[cp]; id >= 0) out.push_back(id);
    } else {
      std::string utf8;
      unicode::append_utf8(utf8, cp);
      for (unsigned char c : utf8) {
        if (const int32_t id = v.bpe_raw_byte_token[c]; id >= 0) out.push_back(id);
      }
    }
  }
}

void encode_word(const Vocab& v, std::string_view word, Scratch& s, std::vector<int32_t>& out) {
  if (word.empty()) return;
  if (v.ignore_merges) {
    s.mapped.clear();
    for (unsigned char b : word) unicode::append_utf8(s.mapped, unicode::byte_to_codepoint(b));
    if (const int32_t id = v.find(s.mapped); id >= 0) {
      out.push_back(id);
      return;
    }
  }
  auto& sym = s.sym;
  sym.clear();
  for (size_t i = 0; i < word.size(); ++i) {
    const auto at = static_cast<int32_t>(i);
    sym.push_back({static_cast<uint32_t>(i), 1, v.bpe_byte_token[static_cast<unsigned char>(word[i])], at - 1,
                   i + 1 < word.size() ? at + 1 : -1});
  }
  auto& heap = s.heap;
  heap.clear();
  const ByRankThenLeft later;
  auto try_add = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0 || sym[left].id < 0 || sym[right].id < 0) return;
    const BpeMerge* m = v.merge(sym[left].id, sym[right].id);
    if (m == nullptr) return;
    heap.push_back({m->rank, left, right, m->result, sym[left].len + sym[right].len});
    std::push_heap(heap.begin(), heap.end(), later);
  };
  for (int32_t i = 1; i < static_cast<int32_t>(sym.size()); ++i) try_add(i - 1, i);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    const Bigram b = heap.back();
    heap.pop_back();
    Symbol& l = sym[b.left];
    Symbol& r = sym[b.right];
    if (l.len == 0 || r.len == 0 || l.len + r.len != b.len) continue;
    l.len += r.len;
    l.id = b.result;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = b.left;
    try_add(l.prev, b.left);
    try_add(b.left, l.next);
  }

  for (int32_t i = 0; i >= 0; i = sym[i].next) {
    if (sym[i].id >= 0) {
      out.push_back(sym[i].id);
    } else {
      emit_fallback(v, word.substr(sym[i].begin, sym[i].len), out);
    }
  }
}

}  // namespace

void encode_bpe(const Vocab& v, std::string_view text, std::vector<int32_t>& out) {
  thread_local Scratch s;
  s.cps.clear();
  unicode::decode_utf8_lenient(text, s.cps);
  pretokenize(v.pre_type, s.cps, s.words, s.tmp);
  for (const CpRange w : s.words) {
    // The word's bytes, re-encoded from code points the way llama.cpp does (so malformed input
    // arrives as U+FFFD).
    s.bytes.clear();
    for (uint32_t i = w.begin; i < w.end; ++i) unicode::append_utf8(s.bytes, s.cps[i]);
    encode_word(v, s.bytes, s, out);
  }
}

}  // namespace llmd::model::detail
