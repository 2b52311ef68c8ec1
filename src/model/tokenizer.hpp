#pragma once
// The tokenizer of a GGUF model, exact to llama.cpp: SentencePiece (`tokenizer.ggml.model =
// llama`: score-driven bigram merges, byte fallback, U+2581 spaces) and byte-level BPE (`gpt2`:
// merge ranks, GPT-2 byte map, the regex pre-tokenizer named by `tokenizer.ggml.pre`).
//
// Loading (from_gguf) is the control path and throws llmd::Error naming the file. Everything
// else is the data path: no exceptions, no global state; a Tokenizer is immutable, cheap to copy
// (the vocabulary is shared) and safe to use from many threads at once.
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace llmd::model {

class GgufFile;
namespace detail {
struct Vocab;
}

class Tokenizer {
 public:
  static Tokenizer from_gguf(const GgufFile& f);

  // add_special: BOS first when the vocab wants it (tokenizer.ggml.add_bos_token; default true
  // for SentencePiece and Llama-3-style BPE, false for other BPE), EOS last when
  // tokenizer.ggml.add_eos_token says so.
  // parse_special: texts of control tokens found in `text` become those tokens. User-defined
  // tokens are always recognised, as in llama.cpp (and Hugging Face tokenizers).
  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special = false) const;

  // The bytes one token contributes: SentencePiece U+2581 -> ' ', <0xXX> -> that byte; BPE maps
  // its characters back to bytes. Control and unknown tokens give "" unless render_special.
  // May be a fragment of a UTF-8 character. An id out of range gives "".
  std::string token_to_piece(int32_t id, bool render_special = false) const;

  // llama.cpp's llama_detokenize(remove_special = skip_special, unparse_special = !skip_special):
  // the pieces concatenated; when the vocab adds a space prefix, one leading space of the first
  // token is dropped (a BOS the vocab adds and skip_special removes counts as no token, so then
  // the space stays); skip_special also drops that leading BOS and a trailing EOS the vocab adds.
  // Unlike llama.cpp the result is always well-formed UTF-8: ill-formed bytes become U+FFFD.
  // (llama.cpp's clean_up_tokenization_spaces pass for some BPE vocabs is not applied.)
  std::string decode(std::span<const int32_t> ids, bool skip_special = true) const;

  int64_t size() const;
  int32_t bos() const;  // -1 when the vocab has none
  int32_t eos() const;
  int32_t unk() const;
  bool is_eog(int32_t id) const;  // eos, eot, eom and the end-of-turn tokens llama.cpp knows by text
  bool add_bos() const;
  bool add_eos() const;
  bool add_space_prefix() const;
  std::string_view model() const;  // "llama" or "gpt2"
  std::string_view pre() const;    // tokenizer.ggml.pre as stored ("" when absent)
  bool is_control(int32_t id) const;
  std::string_view token_text(int32_t id) const;  // as stored in the file; "" out of range
  std::optional<int32_t> find_token(std::string_view text) const;

 private:
  friend class StreamDecoder;
  explicit Tokenizer(std::shared_ptr<const detail::Vocab> v) : v_(std::move(v)) {}
  std::shared_ptr<const detail::Vocab> v_;
};

// Incremental detokenizer for streaming. push() returns the well-formed UTF-8 text not returned
// yet, holding back a multi-byte character split across tokens (and a trailing EOS that decode
// would drop); finish() flushes, an incomplete leftover becoming U+FFFD. All returned strings
// concatenated equal tok.decode(all ids, skip_special). Shares `tok`'s vocabulary.
// With `continuation`, the ids continue text decoded before (a completion after its prompt), so
// the first token keeps its leading space, as a server's streamed text must.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool skip_special = true, bool continuation = false);
  std::string push(int32_t id);
  std::string finish();

  // Appending forms of push/finish, for loops that reuse one buffer.
  void push(int32_t id, std::string& out);
  void finish(std::string& out);

 private:
  void render(int32_t id);
  Tokenizer tok_;
  bool skip_special_;
  bool remove_space_;
  size_t count_ = 0;
  int32_t held_eos_ = -1;
  std::string pending_;  // bytes rendered but not yet returned
};

}  // namespace llmd::model
