#pragma once
// BPE pre-tokenizers: the regex splits of `tokenizer.ggml.pre`, hand-written over Unicode
// categories. Each pre type is a list of regexes applied one after another the way llama.cpp's
// unicode_regex_split applies them: a regex runs over every piece the previous one left, and both
// its matches and the text between them become pieces. Every matcher is leftmost-first with
// backtracking semantics (ECMAScript/PCRE), and linear in the input.
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace llmd::model {

enum class PreType : uint8_t {
  Default,        // "default" and a missing key: llama.cpp's fallback regex list
  Gpt2,           // "gpt-2" and its aliases
  Llama3,         // "llama3", "llama-bpe", ...
  Qwen2,          // "qwen2", ...
  DeepseekLlm,    // "deepseek-llm"
  DeepseekCoder,  // "deepseek-coder"
  Starcoder,      // "starcoder" and its aliases
  Falcon,         // "falcon"
};

struct PreTypeInfo {
  PreType type = PreType::Default;
  bool ignore_merges = false;  // a word that is itself a token is emitted whole (Llama 3)
  bool add_bos = false;        // default for tokenizer.ggml.add_bos_token
};

// nullopt for a name llama.cpp does not know either.
std::optional<PreTypeInfo> pre_type_from_name(std::string_view name);

// A piece of the input: code point indices [begin, end).
struct CpRange {
  uint32_t begin = 0;
  uint32_t end = 0;
};

// Splits `cps` (the lenient decoding of the text) into pieces covering it in order.
// `scratch` is reused between calls to avoid allocation.
void pretokenize(PreType type, std::span<const uint32_t> cps, std::vector<CpRange>& out,
                 std::vector<CpRange>& scratch);

}  // namespace llmd::model
