#pragma once
// Internal to the tokenizer: the vocabulary as loaded from GGUF, shared (immutable) by every
// Tokenizer copy, and the pieces of the encoder that work on it. Not part of the public API.
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "model/pretokenizer.hpp"

namespace llmd::model {

class GgufFile;

namespace detail {

// llama.cpp's token attributes (llama_token_attr), plus our own end-of-generation mark.
enum TokenAttr : uint32_t {
  kAttrUnknown = 1u << 0,
  kAttrUnused = 1u << 1,
  kAttrNormal = 1u << 2,
  kAttrControl = 1u << 3,
  kAttrUserDefined = 1u << 4,
  kAttrByte = 1u << 5,
  kAttrLstrip = 1u << 7,
  kAttrRstrip = 1u << 8,
  kAttrEog = 1u << 16,
};

enum class VocabKind : uint8_t { Spm, Bpe };

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

struct BpeMerge {
  int32_t rank = 0;
  int32_t result = -1;  // the token of the joined text; -1 when the vocab lacks it
};

// Finds special-token texts in raw text: a byte trie over every control / user-defined / unknown
// token, each node naming its token's rank in the order llama.cpp splits them out (longest
// first), so one scan finds all occurrences of all of them.
struct SpecialTrie {
  std::array<bool, 256> first{};                // bytes some special text starts with
  std::vector<int32_t> node_rank{-1};           // per node: rank of the token ending here, or -1
  std::unordered_map<uint64_t, int32_t> edges;  // (node << 8 | byte) -> child node
  std::vector<int32_t> order;                   // special token ids, longest text first

  int32_t child(int32_t node, uint8_t b) const {
    const auto it = edges.find((static_cast<uint64_t>(node) << 8) | b);
    return it == edges.end() ? -1 : it->second;
  }
};

struct Vocab {
  std::string path;
  std::string model;  // "llama" or "gpt2"
  std::string pre;
  VocabKind kind = VocabKind::Spm;
  PreType pre_type = PreType::Default;

  std::vector<std::string> text;  // token texts as stored in the file
  std::vector<float> score;
  std::vector<uint32_t> attr;      // TokenAttr bits
  std::vector<std::string> piece;  // what each token renders as when specials are rendered
  std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> id_of;

  int32_t bos = -1, eos = -1, unk = -1, eot = -1, eom = -1;
  bool add_bos = false;
  bool add_eos = false;
  bool add_space_prefix = false;
  bool ignore_merges = false;

  // SentencePiece byte fallback: the <0xXX> token of each byte (-1: none).
  std::array<int32_t, 256> spm_byte_token{};
  // Byte-level BPE: the token of each byte's stand-in character, and llama.cpp's last resort for a
  // symbol missing from the vocab: the token whose text is that single raw byte.
  std::array<int32_t, 256> bpe_byte_token{};
  std::array<int32_t, 256> bpe_raw_byte_token{};
  std::unordered_map<uint64_t, BpeMerge> merges;  // (left id << 32 | right id) -> merge

  SpecialTrie special;

  int32_t size() const { return static_cast<int32_t>(text.size()); }
  int32_t find(std::string_view s) const {
    const auto it = id_of.find(s);
    return it == id_of.end() ? -1 : it->second;
  }
  const BpeMerge* merge(int32_t left, int32_t right) const {
    const auto it = merges.find((static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
                                static_cast<uint32_t>(right));
    return it == merges.end() ? nullptr : &it->second;
  }
};

// tokenizer_load.cpp: reads and checks everything; throws llmd::Error naming the file.
Vocab load_vocab(const GgufFile& f);

// tokenizer_special.cpp: text split into raw stretches and special tokens, in order.
struct Fragment {
  int32_t token = -1;  // -1: raw text [begin, end)
  size_t begin = 0;
  size_t end = 0;
};
void partition_special(const Vocab& v, std::string_view text, bool parse_special, std::vector<Fragment>& out);

// tokenizer_spm.cpp: `text` already has its spaces escaped to U+2581.
void encode_spm(const Vocab& v, std::string_view text, std::vector<int32_t>& out);

// tokenizer_bpe.cpp: one raw fragment through the pre-tokenizer and the merges.
void encode_bpe(const Vocab& v, std::string_view text, std::vector<int32_t>& out);

}  // namespace detail
}  // namespace llmd::model
