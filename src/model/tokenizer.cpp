#include "model/tokenizer.hpp"

#include <limits>

#include "model/gguf.hpp"
#include "model/tokenizer_vocab.hpp"
#include "model/unicode.hpp"

namespace llmd::model {

using detail::Vocab;
using detail::VocabKind;

Tokenizer Tokenizer::from_gguf(const GgufFile& f) {
  return Tokenizer(std::make_shared<const Vocab>(detail::load_vocab(f)));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
  const Vocab& v = *v_;
  std::vector<int32_t> out;
  // Offsets inside the encoders are 32-bit; nobody tokenizes 4 GiB at once.
  if (text.size() >= std::numeric_limits<uint32_t>::max() - 1) return out;
  out.reserve(text.size() / 3 + 2);

  thread_local std::vector<detail::Fragment> fragments;
  detail::partition_special(v, text, parse_special, fragments);
  if (add_special && v.add_bos) out.push_back(v.bos);
  if (v.kind == VocabKind::Spm) {
    // A raw stretch at the start or right after a special token gets the space prefix.
    thread_local std::string escaped;
    bool after_special = true;
    for (const detail::Fragment& fr : fragments) {
      if (fr.token >= 0) {
        out.push_back(fr.token);
        after_special = true;
        continue;
      }
      escaped.clear();
      if (v.add_space_prefix && after_special) escaped += "\xE2\x96\x81";
      for (char c : text.substr(fr.begin, fr.end - fr.begin)) {
        if (c == ' ') {
          escaped += "\xE2\x96\x81";
        } else {
          escaped.push_back(c);
        }
      }
      detail::encode_spm(v, escaped, out);
      after_special = false;
    }
  } else {
    for (const detail::Fragment& fr : fragments) {
      if (fr.token >= 0) {
        out.push_back(fr.token);
      } else {
        detail::encode_bpe(v, text.substr(fr.begin, fr.end - fr.begin), out);
      }
    }
  }
  if (add_special && v.add_eos) out.push_back(v.eos);
  return out;
}

std::string Tokenizer::token_to_piece(int32_t id, bool render_special) const {
  const Vocab& v = *v_;
  if (id < 0 || id >= v.size()) return {};
  if (!render_special && (v.attr[id] & (detail::kAttrControl | detail::kAttrUnknown))) return {};
  return v.piece[id];
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  StreamDecoder d(*this, skip_special);
  std::string out;
  for (int32_t id : ids) d.push(id, out);
  d.finish(out);
  return out;
}

int64_t Tokenizer::size() const {
  return v_->size();
}
int32_t Tokenizer::bos() const {
  return v_->bos;
}
int32_t Tokenizer::eos() const {
  return v_->eos;
}
int32_t Tokenizer::unk() const {
  return v_->unk;
}
bool Tokenizer::add_bos() const {
  return v_->add_bos;
}
bool Tokenizer::add_eos() const {
  return v_->add_eos;
}
bool Tokenizer::add_space_prefix() const {
  return v_->add_space_prefix;
}
std::string_view Tokenizer::model() const {
  return v_->model;
}
std::string_view Tokenizer::pre() const {
  return v_->pre;
}

bool Tokenizer::is_eog(int32_t id) const {
  return id >= 0 && id < v_->size() && (v_->attr[id] & detail::kAttrEog);
}

bool Tokenizer::is_control(int32_t id) const {
  return id >= 0 && id < v_->size() && (v_->attr[id] & detail::kAttrControl);
}

std::string_view Tokenizer::token_text(int32_t id) const {
  return id >= 0 && id < v_->size() ? std::string_view(v_->text[id]) : std::string_view();
}

std::optional<int32_t> Tokenizer::find_token(std::string_view text) const {
  const int32_t id = v_->find(text);
  return id >= 0 ? std::optional<int32_t>(id) : std::nullopt;
}

// --- StreamDecoder ---------------------------------------------------------------------------
// Follows llama_detokenize token by token: a leading BOS (when the vocab adds one and specials
// are skipped) is dropped and keeps the next token's space; the first token otherwise loses one
// leading space when the vocab adds a space prefix; a trailing EOS the vocab adds is dropped,
// which a stream can only know at the end, so an EOS is held until another token follows.

StreamDecoder::StreamDecoder(const Tokenizer& tok, bool skip_special, bool continuation)
    : tok_(tok), skip_special_(skip_special), remove_space_(tok.v_->add_space_prefix && !continuation) {}

void StreamDecoder::render(int32_t id) {
  std::string piece = tok_.token_to_piece(id, !skip_special_);
  size_t from = 0;
  if (remove_space_ && !piece.empty() && piece[0] == ' ') from = 1;
  remove_space_ = false;
  pending_.append(piece, from);
}

void StreamDecoder::push(int32_t id, std::string& out) {
  const Vocab& v = *tok_.v_;
  const bool first = count_++ == 0;
  if (first && skip_special_ && v.add_bos && id == v.bos) {
    remove_space_ = false;
    return;
  }
  if (held_eos_ >= 0) {
    render(held_eos_);
    held_eos_ = -1;
  }
  if (skip_special_ && v.add_eos && id == v.eos) {
    held_eos_ = id;
  } else {
    render(id);
  }
  const size_t used = unicode::append_valid_utf8(out, pending_, false);
  pending_.erase(0, used);
}

void StreamDecoder::finish(std::string& out) {
  held_eos_ = -1;  // it was the last token: decode drops it
  unicode::append_valid_utf8(out, pending_, true);
  pending_.clear();
}

std::string StreamDecoder::push(int32_t id) {
  std::string out;
  push(id, out);
  return out;
}

std::string StreamDecoder::finish() {
  std::string out;
  finish(out);
  return out;
}

}  // namespace llmd::model
