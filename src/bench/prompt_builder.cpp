#include "bench/prompt_builder.hpp"

#include <algorithm>
#include <iterator>

#include "common/error.hpp"

namespace llmd::bench {
namespace {

// Common English words: text prompts look like text to servers that tokenize them.
constexpr std::string_view kWords[] = {
    "the",    "of",    "and",   "to",    "in",     "is",    "you",     "that",   "it",   "he",    "was",
    "for",    "on",    "are",   "as",    "with",   "his",   "they",    "at",     "be",   "this",  "have",
    "from",   "or",    "one",   "had",   "by",     "word",  "but",     "not",    "what", "all",   "were",
    "we",     "when",  "your",  "can",   "said",   "there", "use",     "an",     "each", "which", "she",
    "do",     "how",   "their", "if",    "will",   "up",    "other",   "about",  "out",  "many",  "then",
    "them",   "these", "so",    "some",  "her",    "would", "make",    "like",   "him",  "into",  "time",
    "has",    "look",  "two",   "more",  "write",  "go",    "see",     "number", "no",   "way",   "could",
    "people", "my",    "than",  "first", "water",  "been",  "call",    "who",    "oil",  "its",   "now",
    "find",   "long",  "down",  "day",   "did",    "get",   "come",    "made",   "may",  "part",  "over",
    "new",    "sound", "take",  "only",  "little", "work",  "know",    "place",  "year", "live",  "me",
    "back",   "give",  "most",  "very",  "after",  "thing", "our",     "just",   "name", "good",  "sentence",
    "man",    "think", "say",   "great", "where",  "help",  "through", "much"};

bool ordinary(const model::Tokenizer& tok, int32_t id) {
  if (tok.is_control(id) || tok.is_eog(id) || id == tok.unk()) return false;
  const std::string_view t = tok.token_text(id);
  if (t.size() == 6 && t.starts_with("<0x") && t.ends_with('>')) return false;  // byte fallback
  const std::string piece = tok.token_to_piece(id);
  if (piece.empty()) return false;
  for (unsigned char c : piece)
    if (c < 0x20 || c > 0x7e) return false;  // keeps decode(ids) plain, well-formed text
  return true;
}

}  // namespace

uint64_t derive_seed(uint64_t seed, uint64_t a, uint64_t b) {
  Rng r(seed ^ 0x6C6C6D6462656E63ull);  // "llmdbenc"
  uint64_t s = r.next() ^ a;
  Rng r2(s);
  s = r2.next() ^ b;
  return Rng(s).next();
}

int32_t estimate_tokens(std::string_view text) {
  if (text.empty()) return 0;
  return std::max<int32_t>(1, static_cast<int32_t>(text.size() / 4));
}

PromptBuilder::PromptBuilder(const model::Tokenizer* tok) : tok_(tok) {
  if (!tok_) return;
  for (int64_t id = 0; id < tok_->size(); ++id)
    if (ordinary(*tok_, static_cast<int32_t>(id))) pool_.push_back(static_cast<int32_t>(id));
  if (pool_.empty()) {  // an odd vocab: settle for anything that is not a control token
    for (int64_t id = 0; id < tok_->size(); ++id)
      if (!tok_->is_control(static_cast<int32_t>(id))) pool_.push_back(static_cast<int32_t>(id));
  }
  if (pool_.empty()) fail("tokenizer has no ordinary tokens to build prompts from");
}

size_t PromptBuilder::alphabet() const {
  return tok_ ? pool_.size() : std::size(kWords);
}

void PromptBuilder::append(Prompt& p, Rng& rng, int32_t len, int64_t first) const {
  if (len <= 0) return;
  if (tok_) {
    p.tokens.reserve(p.tokens.size() + len);
    for (int32_t i = 0; i < len; ++i) {
      const size_t k =
          (i == 0 && first >= 0) ? static_cast<size_t>(first) % pool_.size() : rng.below(pool_.size());
      p.tokens.push_back(pool_[k]);
    }
    return;
  }
  // Exactly 4*len characters of words, each followed by a space (the last one cut to fit), so
  // estimate_tokens gives len back and segments join at a word boundary.
  const size_t target = static_cast<size_t>(len) * 4;
  size_t added = 0;
  p.text.reserve(p.text.size() + target);
  for (bool at_first = true; added < target; at_first = false) {
    const size_t k = (at_first && first >= 0) ? static_cast<size_t>(first) % std::size(kWords)
                                              : rng.below(std::size(kWords));
    const std::string_view w = kWords[k];
    const size_t room = target - added;
    if (w.size() + 1 <= room) {
      p.text.append(w);
      p.text.push_back(' ');
      added += w.size() + 1;
    } else {
      p.text.append(w.substr(0, room - 1));
      p.text.push_back(' ');
      added = target;
    }
  }
}

void PromptBuilder::append_text(Prompt& p, std::string_view text) const {
  if (tok_) {
    const auto ids = tok_->encode(text, /*add_special=*/false);
    p.tokens.insert(p.tokens.end(), ids.begin(), ids.end());
  } else {
    p.text.append(text);
  }
}

void PromptBuilder::fill(BenchRequest& req, Prompt p) const {
  if (tok_) {
    req.prompt_text = tok_->decode(p.tokens);
    req.prompt_len = static_cast<int32_t>(p.tokens.size());
    req.prompt_tokens = std::move(p.tokens);
  } else {
    req.prompt_len = estimate_tokens(p.text);
    req.prompt_text = std::move(p.text);
  }
}

int32_t PromptBuilder::count(std::string_view text) const {
  if (tok_) return static_cast<int32_t>(tok_->encode(text, /*add_special=*/false).size());
  return estimate_tokens(text);
}

std::string PromptBuilder::as_text(const Prompt& p) const {
  return tok_ ? tok_->decode(p.tokens) : p.text;
}

std::string PromptBuilder::text(Rng& rng, int32_t len) const {
  Prompt p;
  append(p, rng, len);
  return tok_ ? tok_->decode(p.tokens) : std::move(p.text);
}

}  // namespace llmd::bench
