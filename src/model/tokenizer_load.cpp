// Reading the vocabulary from GGUF metadata, with llama.cpp's defaults and its text-based
// fix-ups of special tokens (llama_vocab::impl::load), and checking everything the file says.
#include <algorithm>
#include <cctype>
#include <limits>
#include <set>

#include "common/error.hpp"
#include "model/gguf.hpp"
#include "model/tokenizer_vocab.hpp"
#include "model/unicode.hpp"

namespace llmd::model::detail {
namespace {

// tokenizer.ggml.token_type values (llama_token_type) -> attributes.
uint32_t attr_of_type(int64_t type) {
  switch (type) {
    case 1:
      return kAttrNormal;
    case 2:
      return kAttrUnknown;
    case 3:
      return kAttrControl;
    case 4:
      return kAttrUserDefined;
    case 5:
      return kAttrUnused;
    case 6:
      return kAttrByte;
    default:
      return 0;  // undefined: renders as nothing, like llama.cpp
  }
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// "<0xHH>" -> HH, or -1.
int parse_byte_token(std::string_view t) {
  if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return -1;
  const int hi = hex_digit(t[3]), lo = hex_digit(t[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

std::string spm_unescape(std::string_view t) {
  static constexpr std::string_view kSpace = "\xE2\x96\x81";  // U+2581
  std::string out;
  out.reserve(t.size());
  for (size_t i = 0; i < t.size();) {
    if (t.substr(i, 3) == kSpace) {
      out.push_back(' ');
      i += 3;
    } else {
      out.push_back(t[i++]);
    }
  }
  return out;
}

// Byte-level BPE text back to bytes. A character that stands for no byte is kept as its UTF-8
// (llama.cpp writes a "[UNK_BYTE_0x..]" marker instead).
std::string bpe_unmap(std::string_view t) {
  std::vector<uint32_t> cps;
  unicode::decode_utf8_lenient(t, cps);
  std::string out;
  out.reserve(t.size());
  for (uint32_t cp : cps) {
    const int b = unicode::codepoint_to_byte(cp);
    if (b >= 0) {
      out.push_back(static_cast<char>(b));
    } else {
      unicode::append_utf8(out, cp);
    }
  }
  return out;
}

// What token_to_piece returns with specials rendered (llama.cpp's token-to-piece cache).
std::string render_piece(const Vocab& v, int32_t id) {
  const uint32_t a = v.attr[id];
  const std::string& t = v.text[id];
  if (a & (kAttrUnknown | kAttrControl | kAttrUserDefined)) return t;
  if (a & kAttrNormal) return v.kind == VocabKind::Spm ? spm_unescape(t) : bpe_unmap(t);
  if (a & kAttrByte) return std::string(1, static_cast<char>(parse_byte_token(t)));
  return {};  // unused / undefined
}

// clang-format off
// Texts llama.cpp treats as end-of-generation (and therefore control) whatever the file says.
constexpr std::string_view kEogTexts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>",
    "[e~[",
};
constexpr std::string_view kEotTexts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>",
    "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>",
};
// Fill-in-the-middle tokens, found by text when no key names them; each becomes control.
constexpr std::string_view kFimPre[] = {
    "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>",
    "<|prefix|>",
};
constexpr std::string_view kFimSuf[] = {
    "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>",
    "<|suffix|>",
};
constexpr std::string_view kFimMid[] = {
    "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>",
    "<|middle|>",
};
constexpr std::string_view kFimPad[] = {
    "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]",
};
constexpr std::string_view kFimRep[] = {
    "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>",
};
constexpr std::string_view kFimSep[] = {
    "<|file_sep|>",
};
// clang-format on

template <size_t N>
bool one_of(std::string_view t, const std::string_view (&set)[N]) {
  return std::find(std::begin(set), std::end(set), t) != std::end(set);
}

class Loader {
 public:
  explicit Loader(const GgufFile& f) : f_(f), path_(f.path()) { v_.path = path_; }

  Vocab run() {
    read_model();
    read_tokens();
    if (v_.kind == VocabKind::Bpe) read_merges();
    read_special_ids();
    read_flags();
    fix_special_tokens();
    build_lookups();
    return std::move(v_);
  }

 private:
  void read_model() {
    const auto model = f_.get_string("tokenizer.ggml.model");
    if (!model) fail("{}: no tokenizer (tokenizer.ggml.model is missing)", path_);
    v_.model = *model;
    if (v_.model == "llama") {
      v_.kind = VocabKind::Spm;
      v_.add_bos = true;
      v_.add_space_prefix = true;
    } else if (v_.model == "gpt2") {
      v_.kind = VocabKind::Bpe;
    } else {
      fail("{}: tokenizer model '{}' is not supported (llama and gpt2 are)", path_, v_.model);
    }
    v_.pre = f_.get_string("tokenizer.ggml.pre").value_or("");
    if (v_.kind == VocabKind::Bpe) {
      const auto info = pre_type_from_name(v_.pre);
      if (!info) fail("{}: unknown pre-tokenizer '{}' (tokenizer.ggml.pre)", path_, v_.pre);
      v_.pre_type = info->type;
      v_.ignore_merges = info->ignore_merges;
      v_.add_bos = info->add_bos;
    }
  }

  void read_tokens() {
    auto tokens = f_.get_string_array("tokenizer.ggml.tokens");
    if (!tokens || tokens->empty()) fail("{}: tokenizer.ggml.tokens is missing or empty", path_);
    if (tokens->size() > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
      fail("{}: {} tokens do not fit 32-bit ids", path_, tokens->size());
    }
    const size_t n = tokens->size();
    const auto scores = f_.get_float_array("tokenizer.ggml.scores");
    if (scores && scores->size() < n) {
      fail("{}: tokenizer.ggml.scores has {} entries for {} tokens", path_, scores->size(), n);
    }
    const auto types = f_.get_int_array("tokenizer.ggml.token_type");
    if (types && types->size() < n) {
      fail("{}: tokenizer.ggml.token_type has {} entries for {} tokens", path_, types->size(), n);
    }
    v_.text = std::move(*tokens);
    v_.score.assign(n, 0.0f);
    v_.attr.assign(n, kAttrNormal);
    v_.id_of.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      std::string& t = v_.text[i];
      if (t.empty()) t = "[EMPTY_" + std::to_string(i) + "]";  // llama.cpp's name for it
      if (scores) v_.score[i] = (*scores)[i];
      if (types) v_.attr[i] = attr_of_type((*types)[i]);
      if ((v_.attr[i] & kAttrByte) && parse_byte_token(t) < 0) {
        fail("{}: token {} is typed as a byte but its text '{}' is not <0xHH>", path_, i, t);
      }
      const auto [it, fresh] = v_.id_of.emplace(t, static_cast<int32_t>(i));
      if (!fresh) fail("{}: duplicate token '{}' (ids {} and {})", path_, t, it->second, i);
    }
  }

  void read_merges() {
    const auto merges = f_.get_string_array("tokenizer.ggml.merges");
    if (!merges) fail("{}: BPE tokenizer without tokenizer.ggml.merges", path_);
    if (merges->size() > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
      fail("{}: {} merges are too many", path_, merges->size());
    }
    v_.merges.reserve(merges->size());
    for (size_t i = 0; i < merges->size(); ++i) {
      const std::string& m = (*merges)[i];
      const size_t sp = m.find(' ', 1);
      if (sp == std::string::npos)
        fail("{}: merge {} ('{}') is not two tokens separated by a space", path_, i, m);
      const std::string_view left = std::string_view(m).substr(0, sp);
      const std::string_view right = std::string_view(m).substr(sp + 1);
      const int32_t a = v_.find(left), b = v_.find(right);
      if (a < 0 || b < 0)
        fail("{}: merge {} ('{}') names a token that is not in the vocabulary", path_, i, m);
      const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
      // The first (lowest-rank) entry of a repeated pair wins, as in llama.cpp.
      v_.merges.emplace(key,
                        BpeMerge{static_cast<int32_t>(i), v_.find(std::string(left) + std::string(right))});
    }
  }

  // A key naming a token id. Ids the encoder relies on must be in range; others (padding and
  // the like, which some converters set one past the vocab) are dropped when they are not.
  void read_id(std::string_view key, int32_t& id, bool required_in_range) {
    const auto x = f_.get_int(key);
    if (!x) return;
    if (*x < 0) {
      id = -1;
    } else if (*x >= v_.size()) {
      if (required_in_range)
        fail("{}: {} = {} is out of range (the vocabulary has {} tokens)", path_, key, *x, v_.size());
    } else {
      id = static_cast<int32_t>(*x);
    }
  }

  void read_special_ids() {
    if (v_.kind == VocabKind::Spm) {
      v_.bos = 1, v_.eos = 2, v_.unk = 0;
    } else {
      v_.bos = 11, v_.eos = 11, v_.unk = -1;
    }
    for (int32_t* id : {&v_.bos, &v_.eos, &v_.unk}) {
      if (*id >= v_.size()) *id = -1;  // a default the vocab is too small for
    }
    read_id("tokenizer.ggml.bos_token_id", v_.bos, true);
    read_id("tokenizer.ggml.eos_token_id", v_.eos, true);
    read_id("tokenizer.ggml.unknown_token_id", v_.unk, true);
    read_id("tokenizer.ggml.eot_token_id", v_.eot, true);
    read_id("tokenizer.ggml.eom_token_id", v_.eom, true);
    read_id("tokenizer.ggml.fim_pre_token_id", fim_pre_, false);
    read_id("tokenizer.ggml.fim_suf_token_id", fim_suf_, false);
    read_id("tokenizer.ggml.fim_mid_token_id", fim_mid_, false);
    read_id("tokenizer.ggml.prefix_token_id", fim_pre_, false);  // older names of the same
    read_id("tokenizer.ggml.suffix_token_id", fim_suf_, false);
    read_id("tokenizer.ggml.middle_token_id", fim_mid_, false);
    read_id("tokenizer.ggml.fim_pad_token_id", fim_pad_, false);
    read_id("tokenizer.ggml.fim_rep_token_id", fim_rep_, false);
    read_id("tokenizer.ggml.fim_sep_token_id", fim_sep_, false);
  }

  void read_flags() {
    if (const auto b = f_.get_bool("tokenizer.ggml.add_bos_token")) v_.add_bos = *b;
    if (const auto b = f_.get_bool("tokenizer.ggml.add_eos_token")) v_.add_eos = *b;
    if (const auto b = f_.get_bool("tokenizer.ggml.add_space_prefix")) v_.add_space_prefix = *b;
    if (v_.add_bos && v_.bos < 0)
      fail("{}: tokenizer.ggml.add_bos_token is true but there is no BOS token", path_);
    if (v_.add_eos && v_.eos < 0)
      fail("{}: tokenizer.ggml.add_eos_token is true but there is no EOS token", path_);
  }

  // llama.cpp recognises end-of-turn and fill-in-the-middle tokens by their text and makes them
  // control tokens; this changes how they tokenize and render, so it is done the same way here.
  void fix_special_tokens() {
    const int32_t n = v_.size();
    for (int32_t id = 0; id < n; ++id) {
      const std::string& t = v_.text[id];
      auto detect = [&](int32_t& slot, auto& texts) {
        if (slot < 0 && one_of(t, texts)) {
          slot = id;
          v_.attr[id] |= kAttrControl;
        }
      };
      detect(v_.eot, kEotTexts);
      if (v_.eom < 0 && t == "<|eom_id|>") {
        v_.eom = id;
        v_.attr[id] |= kAttrControl;
      }
      detect(fim_pre_, kFimPre);
      detect(fim_suf_, kFimSuf);
      detect(fim_mid_, kFimMid);
      detect(fim_pad_, kFimPad);
      detect(fim_rep_, kFimRep);
      detect(fim_sep_, kFimSep);
    }

    std::set<int32_t> eog;
    for (int32_t id : {fim_pad_, fim_rep_, fim_sep_}) {
      if (id >= 0) eog.insert(id);
    }
    for (int32_t id = 0; id < n; ++id) {
      if (one_of(v_.text[id], kEogTexts)) {
        eog.insert(id);
        v_.attr[id] |= kAttrControl;
      }
    }
    // gpt-oss: these structure tokens are always rendered.
    for (std::string_view t : {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"}) {
      if (const int32_t id = v_.find(t); id >= 0) v_.attr[id] = kAttrUserDefined;
    }
    for (int32_t id : {v_.eos, v_.eot, v_.eom}) {
      if (id >= 0) eog.insert(id);
    }
    // Harmony-style vocabs end a message with <|end|> but a turn with <|return|> / <|call|>.
    auto in_eog = [&](std::string_view t) {
      const int32_t id = v_.find(t);
      return id >= 0 && eog.contains(id);
    };
    const bool has_call = in_eog("<|call|>") || in_eog("<|calls|>");
    if (in_eog("<|end|>") && ((in_eog("<|return|>") && has_call) || (has_call && in_eog("<|flush|>")))) {
      const int32_t end = v_.find("<|end|>");
      eog.erase(end);
      v_.attr[end] = kAttrUserDefined;
    }
    if (in_eog("<|tool_response>") && in_eog("</s>")) {
      const int32_t s = v_.find("</s>");
      eog.erase(s);
      v_.attr[s] = kAttrNormal;
    }
    for (int32_t id : eog) v_.attr[id] |= kAttrEog;

    // Phi-3's special tokens swallow the whitespace after them (llama.cpp keys this on the name).
    std::string name = f_.get_string("general.name").value_or("");
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    if (name.find("phi-3") != std::string::npos || name.find("phi3") != std::string::npos) {
      for (int32_t id = 0; id < n; ++id) {
        if (v_.attr[id] & (kAttrControl | kAttrUserDefined | kAttrUnknown)) v_.attr[id] |= kAttrRstrip;
      }
      if (const int32_t id = v_.find("</s>"); id >= 0) v_.attr[id] |= kAttrRstrip;
      for (std::string_view t : {"<unk>", "<s>", "<|endoftext|>"}) {
        if (const int32_t id = v_.find(t); id >= 0) v_.attr[id] &= ~kAttrRstrip;
      }
    }
  }

  void build_lookups() {
    const int32_t n = v_.size();
    v_.piece.resize(n);
    for (int32_t id = 0; id < n; ++id) v_.piece[id] = render_piece(v_, id);

    static constexpr char kHex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; ++b) {
      const std::string raw(1, static_cast<char>(b));
      const char name[] = {'<', '0', 'x', kHex[b >> 4], kHex[b & 15], '>', 0};
      const int32_t named = v_.find(name);
      v_.spm_byte_token[b] = named >= 0 ? named : v_.find(raw);
      std::string mapped;
      unicode::append_utf8(mapped, unicode::byte_to_codepoint(static_cast<uint8_t>(b)));
      v_.bpe_byte_token[b] = v_.find(mapped);
      v_.bpe_raw_byte_token[b] = v_.find(raw);
    }

    // Special tokens in llama.cpp's splitting order: longest text first (ties: lower id).
    SpecialTrie& s = v_.special;
    for (int32_t id = 0; id < n; ++id) {
      if (v_.attr[id] & (kAttrControl | kAttrUserDefined | kAttrUnknown)) s.order.push_back(id);
    }
    std::stable_sort(s.order.begin(), s.order.end(),
                     [&](int32_t a, int32_t b) { return v_.text[a].size() > v_.text[b].size(); });
    for (size_t rank = 0; rank < s.order.size(); ++rank) {
      const std::string& t = v_.text[s.order[rank]];
      int32_t node = 0;
      for (unsigned char c : t) {
        const uint64_t key = (static_cast<uint64_t>(node) << 8) | c;
        auto it = s.edges.find(key);
        if (it == s.edges.end()) {
          it = s.edges.emplace(key, static_cast<int32_t>(s.node_rank.size())).first;
          s.node_rank.push_back(-1);
        }
        node = it->second;
      }
      s.node_rank[node] = static_cast<int32_t>(rank);
      s.first[static_cast<unsigned char>(t[0])] = true;
    }
  }

  const GgufFile& f_;
  std::string path_;
  Vocab v_;
  int32_t fim_pre_ = -1, fim_suf_ = -1, fim_mid_ = -1, fim_pad_ = -1, fim_rep_ = -1, fim_sep_ = -1;
};

}  // namespace

Vocab load_vocab(const GgufFile& f) {
  return Loader(f).run();
}

}  // namespace llmd::model::detail
