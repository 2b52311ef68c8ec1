// multi-turn: conversations whose every turn resends the whole history. A conversation's next
// turn exists only once the previous reply is in, so next() may have nothing while replies are due.
#include <deque>

#include "bench/prompt_builder.hpp"
#include "bench/workload_kinds.hpp"
#include "common/error.hpp"

namespace llmd::bench {
namespace {

class MultiTurnWorkload final : public Workload {
 public:
  MultiTurnWorkload(const WorkloadOptions& opt, const WorkloadContext& ctx)
      : opt_(opt), seed_(ctx.seed), pb_(ctx.tokenizer), convs_(static_cast<size_t>(opt.conversations)) {
    for (int32_t c = 0; c < opt.conversations; ++c) ready_.push_back(c);
  }

  std::optional<BenchRequest> next() override {
    if (ready_.empty()) return std::nullopt;
    const int32_t c = ready_.front();
    ready_.pop_front();
    Conversation& conv = convs_[c];
    Rng rng(derive_seed(seed_, 5, (static_cast<uint64_t>(c) << 32) | static_cast<uint32_t>(conv.turn)));
    Prompt user;
    pb_.append(user, rng, opt_.input_len);
    std::string user_text = pb_.as_text(user);
    // One of the two is empty: tokens with a tokenizer, text without.
    conv.history.tokens.insert(conv.history.tokens.end(), user.tokens.begin(), user.tokens.end());
    conv.history.text += user.text;
    conv.messages.emplace_back("user", std::move(user_text));
    conv.waiting = true;

    BenchRequest r;
    r.id = next_id_++;
    r.conversation = c;
    r.turn = conv.turn;
    r.max_tokens = opt_.output_len;
    r.messages = conv.messages;
    pb_.fill(r, conv.history);
    return r;
  }

  void on_reply(const BenchRequest& req, const std::string& generated_text) override {
    if (req.conversation < 0 || req.conversation >= static_cast<int64_t>(convs_.size())) return;
    Conversation& conv = convs_[req.conversation];
    if (!conv.waiting || conv.turn != req.turn) return;  // not the turn this conversation waits on
    conv.waiting = false;
    conv.messages.emplace_back("assistant", generated_text);
    pb_.append_text(conv.history, generated_text);
    if (!pb_.has_tokenizer()) conv.history.text.push_back('\n');  // text turns stay apart
    if (++conv.turn < opt_.turns) ready_.push_back(static_cast<int32_t>(req.conversation));
  }

  std::optional<uint64_t> size() const override {
    return static_cast<uint64_t>(opt_.conversations) * static_cast<uint64_t>(opt_.turns);
  }
  bool finished() const override { return next_id_ >= *size(); }
  std::string describe() const override {
    return fmt::format(
        "multi-turn: {} conversations x {} turns, user messages of {} tokens, output {} tokens{}",
        opt_.conversations, opt_.turns, opt_.input_len, opt_.output_len,
        pb_.has_tokenizer() ? "" : " (text, ~4 chars/token)");
  }

 private:
  struct Conversation {
    int32_t turn = 0;
    bool waiting = false;
    std::vector<std::pair<std::string, std::string>> messages;
    Prompt history;  // every message's tokens (or text) in order: the completions form
  };
  WorkloadOptions opt_;
  uint64_t seed_;
  PromptBuilder pb_;
  std::vector<Conversation> convs_;
  std::deque<int32_t> ready_;  // conversations whose next turn can go, in the order they became ready
  uint64_t next_id_ = 0;
};

}  // namespace

std::unique_ptr<Workload> make_multi_turn_workload(const WorkloadOptions& opt, const WorkloadContext& ctx) {
  if (opt.conversations < 1)
    fail("workload multi-turn: conversations must be positive (got {})", opt.conversations);
  if (opt.turns < 1) fail("workload multi-turn: turns must be positive (got {})", opt.turns);
  if (opt.input_len < 1) fail("workload multi-turn: input_len must be positive (got {})", opt.input_len);
  if (opt.output_len < 1) fail("workload multi-turn: output_len must be positive (got {})", opt.output_len);
  return std::make_unique<MultiTurnWorkload>(opt, ctx);
}

}  // namespace llmd::bench
