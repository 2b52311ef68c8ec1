#pragma once
// Unicode facts the tokenizer needs, without ICU: general-category groups (a generated table,
// scripts/gen_unicode_tables.py), White_Space, UTF-8 decoding that behaves exactly like
// llama.cpp's (so malformed input tokenizes the same way), GPT-2's byte <-> code point map, and a
// strict UTF-8 repair for text handed to clients.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace llmd::model::unicode {

inline constexpr uint32_t kReplacement = 0xFFFD;

// The first letter of the general category; Unassigned is Cn, Other is Cc/Cf/Co/Cs.
enum class Category : uint8_t { Unassigned, Letter, Number, Punctuation, Symbol, Mark, Separator, Other };
Category category(uint32_t cp);  // defined in the generated unicode_tables.cpp

// The White_Space property: what \s means in the Python/Rust regexes tokenizers were trained with.
bool is_whitespace(uint32_t cp);

// llama.cpp's decoder: lead bytes say the length, continuation bytes are checked but overlong
// forms and surrogates are accepted; each byte that starts no sequence becomes one U+FFFD.
// Code points past U+10FFFF (which llama.cpp cannot re-encode) also become U+FFFD.
void decode_utf8_lenient(std::string_view s, std::vector<uint32_t>& out);

// Encodes any code point <= 0x10FFFF, surrogates included (the lenient decoder's inverse).
void append_utf8(std::string& out, uint32_t cp);

// The symbol length SentencePiece-style splitting uses: the lead byte's high bits only.
inline size_t utf8_len_from_lead(uint8_t b) {
  static constexpr uint8_t kLen[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLen[b >> 4];
}

// GPT-2 byte-level BPE: every byte has a printable stand-in code point.
uint32_t byte_to_codepoint(uint8_t b);
int codepoint_to_byte(uint32_t cp);  // -1 when cp stands for no byte

// Appends `in` to `out` as well-formed UTF-8, replacing each maximal ill-formed subpart by
// U+FFFD (Unicode 3.9, the rule browsers use). Returns the bytes of `in` consumed: all of them
// when `final`; otherwise it stops before a trailing sequence that more bytes could complete, so
// feeding a stream in pieces gives exactly what feeding it whole gives.
size_t append_valid_utf8(std::string& out, std::string_view in, bool final);

}  // namespace llmd::model::unicode
