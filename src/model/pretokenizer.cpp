#include "model/pretokenizer.hpp"

#include <algorithm>
#include <array>
#include <utility>

#include "model/unicode.hpp"

namespace llmd::model {

std::optional<PreTypeInfo> pre_type_from_name(std::string_view name) {
  // The names llama.cpp maps onto these regex lists (llama-vocab.cpp), with its per-name flags.
  struct Entry {
    std::string_view name;
    PreTypeInfo info;
  };
  static constexpr std::array kNames = {
      Entry{"", {PreType::Default}},
      Entry{"default", {PreType::Default}},
      Entry{"llama3", {PreType::Llama3, true, true}},
      Entry{"llama-v3", {PreType::Llama3, true, true}},
      Entry{"llama-bpe", {PreType::Llama3, true, true}},
      Entry{"falcon3", {PreType::Llama3, true, true}},
      Entry{"falcon-h1", {PreType::Llama3, true, true}},
      Entry{"pixtral", {PreType::Llama3, true, true}},
      Entry{"midm-2.0", {PreType::Llama3, true, true}},
      Entry{"lfm2", {PreType::Llama3, true, true}},
      Entry{"dbrx", {PreType::Llama3}},
      Entry{"smaug-bpe", {PreType::Llama3}},
      Entry{"deepseek-llm", {PreType::DeepseekLlm}},
      Entry{"deepseek-coder", {PreType::DeepseekCoder}},
      Entry{"falcon", {PreType::Falcon}},
      Entry{"starcoder", {PreType::Starcoder}},
      Entry{"refact", {PreType::Starcoder}},
      Entry{"command-r", {PreType::Starcoder}},
      Entry{"smollm", {PreType::Starcoder}},
      Entry{"codeshell", {PreType::Starcoder}},
      Entry{"exaone", {PreType::Starcoder}},
      Entry{"minerva-7b", {PreType::Starcoder}},
      Entry{"gpt-2", {PreType::Gpt2}},
      Entry{"phi-2", {PreType::Gpt2}},
      Entry{"mpt", {PreType::Gpt2}},
      Entry{"olmo", {PreType::Gpt2}},
      Entry{"jais", {PreType::Gpt2}},
      Entry{"exaone4", {PreType::Gpt2}},
      Entry{"qwen2", {PreType::Qwen2}},
      Entry{"deepseek-r1-qwen", {PreType::Qwen2}},
      Entry{"stablelm2", {PreType::Qwen2}},
      Entry{"megrez", {PreType::Qwen2}},
      Entry{"kormo", {PreType::Qwen2}},
      Entry{"f2llmv2", {PreType::Qwen2}},
  };
  for (const auto& e : kNames) {
    if (e.name == name) return e.info;
  }
  return std::nullopt;
}

namespace {

enum : uint8_t { kL = 1, kN = 2, kP = 4, kWs = 8, kRn = 16 };

// The input as the matchers see it. Non-ASCII whitespace is folded to U+000B because llama.cpp
// does that before running its std::regex fallbacks, which changes what bracket classes such as
// DeepSeek's [ -。] (U+3000..U+3002) can match.
struct Text {
  std::vector<uint32_t> cp;
  std::vector<uint8_t> cls;
  std::vector<uint32_t> ws_end;  // first index >= i that is not whitespace

  void load(std::span<const uint32_t> cps) {
    const size_t n = cps.size();
    cp.resize(n);
    cls.resize(n);
    ws_end.resize(n + 1);
    for (size_t i = 0; i < n; ++i) {
      const uint32_t c = cps[i];
      uint8_t k = 0;
      switch (unicode::category(c)) {
        case unicode::Category::Letter:
          k = kL;
          break;
        case unicode::Category::Number:
          k = kN;
          break;
        case unicode::Category::Punctuation:
          k = kP;
          break;
        default:
          break;
      }
      const bool ws = unicode::is_whitespace(c);
      if (ws) k |= kWs;
      if (c == '\r' || c == '\n') k |= kRn;
      cls[i] = k;
      cp[i] = ws && c > 0x7F ? 0x0B : c;
    }
    ws_end[n] = static_cast<uint32_t>(n);
    for (size_t i = n; i-- > 0;) ws_end[i] = (cls[i] & kWs) ? ws_end[i + 1] : static_cast<uint32_t>(i);
  }

  size_t run(size_t p, size_t end, uint8_t mask) const {
    while (p < end && (cls[p] & mask)) ++p;
    return p;
  }
  // [^\s\p{L}\p{N}]+
  size_t run_other(size_t p, size_t end) const {
    while (p < end && !(cls[p] & (kWs | kL | kN))) ++p;
    return p;
  }
  template <class Pred>
  size_t run_if(size_t p, size_t end, Pred pred) const {
    while (p < end && pred(cp[p])) ++p;
    return p;
  }
  size_t ws_len(size_t p, size_t end) const { return std::min<size_t>(ws_end[p], end) - p; }
};

// Runs one regex over every piece: leftmost matches become pieces, and so does the text between
// them (llama.cpp keeps unmatched stretches as their own words). `match` returns the length of
// the match starting exactly at p, 0 for none.
template <class Match>
void split(const Text& t, const std::vector<CpRange>& in, std::vector<CpRange>& out, Match match) {
  out.clear();
  for (const CpRange r : in) {
    uint32_t gap = r.begin;
    for (uint32_t p = r.begin; p < r.end;) {
      const size_t n = match(t, p, r.end);
      if (n == 0) {
        ++p;
        continue;
      }
      if (p > gap) out.push_back({gap, p});
      out.push_back({p, static_cast<uint32_t>(p + n)});
      p += static_cast<uint32_t>(n);
      gap = p;
    }
    if (gap < r.end) out.push_back({gap, r.end});
  }
}

// 's|'t|'re|'ve|'m|'ll|'d, optionally ASCII case-insensitive as Llama 3 writes it.
size_t contraction(const Text& t, size_t p, size_t end, bool any_case) {
  if (t.cp[p] != '\'' || p + 1 >= end) return 0;
  auto low = [&](size_t i) {
    const uint32_t c = t.cp[i];
    return any_case && c >= 'A' && c <= 'Z' ? c + 32 : c;
  };
  const uint32_t a = low(p + 1);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if (p + 2 >= end) return 0;
  const uint32_t b = low(p + 2);
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  return 0;
}

// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)
size_t match_gpt2(const Text& t, size_t p, size_t end) {
  if (const size_t n = contraction(t, p, end, false)) return n;
  const size_t q = (t.cp[p] == ' ' && p + 1 < end) ? p + 1 : p;
  const uint8_t c = t.cls[q];
  if (c & kL) return t.run(q, end, kL) - p;
  if (c & kN) return t.run(q, end, kN) - p;
  if (!(c & (kWs | kL | kN))) return t.run_other(q, end) - p;
  // \s+(?!\S): all of a trailing run, else the run minus the space that leads the next word.
  const size_t k = t.ws_len(p, end);
  if (p + k == end) return k;
  return k >= 2 ? k - 1 : 0;
}

// (?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,D}|
//  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+     (Llama 3: D = 3, Qwen 2: D = 1)
size_t match_llama3(const Text& t, size_t p, size_t end, size_t max_digits) {
  if (const size_t n = contraction(t, p, end, true)) return n;
  const uint8_t c = t.cls[p];
  if (c & kL) return t.run(p, end, kL) - p;
  if (!(c & (kRn | kL | kN)) && p + 1 < end && (t.cls[p + 1] & kL)) return t.run(p + 1, end, kL) - p;
  if (c & kN) return t.run(p, std::min(end, p + max_digits), kN) - p;
  const size_t q = (t.cp[p] == ' ' && p + 1 < end) ? p + 1 : p;
  if (!(t.cls[q] & (kWs | kL | kN))) {
    size_t r = t.run_other(q, end);
    while (r < end && (t.cls[r] & kRn)) ++r;
    return r - p;
  }
  const size_t k = t.ws_len(p, end);
  // \s*[\r\n]+ backtracks to end just after the run's last line break.
  for (size_t i = p + k; i > p; --i) {
    if (t.cls[i - 1] & kRn) return i - p;
  }
  return (p + k < end && k >= 2) ? k - 1 : k;
}

// [X]+ over a category mask.
template <uint8_t Mask>
size_t match_run(const Text& t, size_t p, size_t end) {
  return t.run(p, end, Mask) - p;
}

// \s?[X]+ where X is a category mask.
template <uint8_t Mask>
size_t match_space_run(const Text& t, size_t p, size_t end) {
  if ((t.cls[p] & kWs) && p + 1 < end && (t.cls[p + 1] & Mask)) return t.run(p + 1, end, Mask) - p;
  return t.run(p, end, Mask) - p;
}

// \p{N}: one number character.
size_t match_one_number(const Text& t, size_t p, size_t) {
  return (t.cls[p] & kN) ? 1 : 0;
}

// [\r\n]
size_t match_line_break(const Text& t, size_t p, size_t) {
  return (t.cls[p] & kRn) ? 1 : 0;
}

// [0-9][0-9][0-9]
size_t match_three_digits(const Text& t, size_t p, size_t end) {
  auto digit = [&](size_t i) { return i < end && t.cp[i] >= '0' && t.cp[i] <= '9'; };
  return digit(p) && digit(p + 1) && digit(p + 2) ? 3 : 0;
}

// [\p{P}\$\+<=>\^~\|]+ (default) and the same with ` (Falcon).
template <bool Backtick>
size_t match_punct_symbols(const Text& t, size_t p, size_t end) {
  auto in = [&](size_t i) {
    if (t.cls[i] & kP) return true;
    switch (t.cp[i]) {
      case '$':
      case '+':
      case '<':
      case '=':
      case '>':
      case '^':
      case '~':
      case '|':
        return true;
      case '`':
        return Backtick;
      default:
        return false;
    }
  };
  size_t r = p;
  while (r < end && in(r)) ++r;
  return r - p;
}

// \s+$ : the whitespace that ends the piece.
size_t match_trailing_space(const Text& t, size_t p, size_t end) {
  return ((t.cls[p] & kWs) && t.ws_end[p] >= end) ? end - p : 0;
}

struct CpInterval {
  uint32_t lo, hi;
};

template <size_t N>
bool in_intervals(const std::array<CpInterval, N>& set, uint32_t cp) {
  auto it =
      std::upper_bound(set.begin(), set.end(), cp, [](uint32_t c, const CpInterval& r) { return c < r.lo; });
  return it != set.begin() && cp <= std::prev(it)->hi;
}

// DeepSeek LLM's letter class, copied from its tokenizer.json as code points (several of them are
// compatibility characters, e.g. U+2126 OHM SIGN, that text editors would silently normalise).
constexpr std::array<CpInterval, 87> kDeepseekLetters = {{
    {0x41, 0x5A},       {0x61, 0x7A},       {0xB5, 0xB5},       {0xC0, 0xD6},       {0xD8, 0xF6},
    {0xF8, 0x1BA},      {0x1BC, 0x1BF},     {0x1C4, 0x293},     {0x295, 0x2AF},     {0x370, 0x373},
    {0x376, 0x376},     {0x377, 0x377},     {0x37B, 0x37D},     {0x37F, 0x37F},     {0x386, 0x386},
    {0x388, 0x38A},     {0x38C, 0x38C},     {0x38E, 0x3A1},     {0x3A3, 0x3F5},     {0x3F7, 0x481},
    {0x48A, 0x52F},     {0x531, 0x556},     {0x10A0, 0x10C5},   {0x13A0, 0x13F5},   {0x13F8, 0x13FD},
    {0x1C90, 0x1CBA},   {0x1CBD, 0x1CBF},   {0x1D00, 0x1D2B},   {0x1D6B, 0x1D77},   {0x1D79, 0x1D9A},
    {0x1E00, 0x1F15},   {0x1F18, 0x1F1D},   {0x1F20, 0x1F45},   {0x1F48, 0x1F4D},   {0x1F50, 0x1F57},
    {0x1F59, 0x1F59},   {0x1F5B, 0x1F5B},   {0x1F5D, 0x1F5D},   {0x1F5F, 0x1F7D},   {0x1F80, 0x1FB4},
    {0x1FB6, 0x1FBC},   {0x1FBE, 0x1FBE},   {0x1FC2, 0x1FC4},   {0x1FC6, 0x1FCC},   {0x1FD0, 0x1FD3},
    {0x1FD6, 0x1FDB},   {0x1FE0, 0x1FEC},   {0x1FF2, 0x1FF4},   {0x1FF6, 0x1FFC},   {0x2102, 0x2102},
    {0x2107, 0x2107},   {0x210A, 0x2113},   {0x2115, 0x2115},   {0x2119, 0x211D},   {0x2124, 0x2124},
    {0x2126, 0x2126},   {0x2128, 0x2128},   {0x212A, 0x212D},   {0x212F, 0x2134},   {0x2139, 0x2139},
    {0x213C, 0x213F},   {0x2145, 0x2149},   {0x214E, 0x214E},   {0x2183, 0x2183},   {0x2184, 0x2184},
    {0x2C00, 0x2C7B},   {0x2C7E, 0x2CE4},   {0x2CEB, 0x2CEE},   {0x2CF2, 0x2CF2},   {0x2CF3, 0x2CF3},
    {0xA640, 0xA66D},   {0xA680, 0xA69B},   {0xA722, 0xA76F},   {0xA771, 0xA787},   {0xA78B, 0xA78E},
    {0xAB70, 0xABBF},   {0xFB00, 0xFB06},   {0xFB13, 0xFB17},   {0xFF21, 0xFF3A},   {0xFF41, 0xFF5A},
    {0x10400, 0x1044F}, {0x104B0, 0x104D3}, {0x104D8, 0x104FB}, {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2},
    {0x118A0, 0x118DF}, {0x1E900, 0x1E943},
}};

// [!-/:-~！-／：-～‘-‟　-。] (note that :-~ covers the ASCII letters too).
constexpr std::array<CpInterval, 6> kDeepseekPunct = {{
    {0x21, 0x2F},
    {0x3A, 0x7E},
    {0x2018, 0x201F},
    {0x3000, 0x3002},
    {0xFF01, 0xFF0F},
    {0xFF1A, 0xFF5E},
}};

// [一-龥ࠀ-一가-퟿]
constexpr std::array<CpInterval, 2> kDeepseekCjk = {{{0x800, 0x9FA5}, {0xAC00, 0xD7FF}}};

// \s?[class]+ over one of DeepSeek's explicit code point classes.
template <const auto& Set>
size_t match_space_class(const Text& t, size_t p, size_t end) {
  auto in = [](uint32_t c) { return in_intervals(Set, c); };
  if ((t.cls[p] & kWs) && p + 1 < end && in(t.cp[p + 1])) return t.run_if(p + 1, end, in) - p;
  return t.run_if(p, end, in) - p;
}

template <const auto& Set>
size_t match_class_run(const Text& t, size_t p, size_t end) {
  return t.run_if(p, end, [](uint32_t c) { return in_intervals(Set, c); }) - p;
}

struct Scratch {
  Text text;
};

}  // namespace

void pretokenize(PreType type, std::span<const uint32_t> cps, std::vector<CpRange>& out,
                 std::vector<CpRange>& scratch) {
  thread_local Scratch s;
  Text& t = s.text;
  t.load(cps);
  out.clear();
  if (cps.empty()) return;
  out.push_back({0, static_cast<uint32_t>(cps.size())});
  auto step = [&](auto match) {
    split(t, out, scratch, match);
    std::swap(out, scratch);
  };
  switch (type) {
    case PreType::Default:
      step(match_punct_symbols<false>);
      step(match_gpt2);
      step(match_run<kN>);
      step(match_three_digits);
      break;
    case PreType::Gpt2:
      step(match_gpt2);
      break;
    case PreType::Llama3:
      step([](const Text& x, size_t p, size_t e) { return match_llama3(x, p, e, 3); });
      break;
    case PreType::Qwen2:
      step([](const Text& x, size_t p, size_t e) { return match_llama3(x, p, e, 1); });
      break;
    case PreType::DeepseekLlm:
      step(match_line_break);
      step(match_space_class<kDeepseekLetters>);
      step(match_space_class<kDeepseekPunct>);
      step(match_trailing_space);
      step(match_class_run<kDeepseekCjk>);
      step(match_run<kN>);
      break;
    case PreType::DeepseekCoder:
      step(match_line_break);
      step(match_space_run<kL>);
      step(match_space_run<kP>);
      step(match_class_run<kDeepseekCjk>);
      step(match_one_number);
      break;
    case PreType::Starcoder:
      step(match_one_number);
      step(match_gpt2);
      break;
    case PreType::Falcon:
      step(match_punct_symbols<true>);
      step(match_gpt2);
      step(match_three_digits);
      break;
  }
}

}  // namespace llmd::model
