#pragma once
// What `llmd bench` sends: a workload is a source of requests (prompt, output length, optional
// arrival time), built as token ids when a tokenizer is known, else as text. Multi-turn workloads
// hear back each reply, because the next turn resends the history.
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "model/tokenizer.hpp"

namespace llmd::bench {

struct BenchRequest {
  uint64_t id = 0;                     // position in the workload's order
  std::vector<int32_t> prompt_tokens;  // set when the workload builds token ids
  std::string prompt_text;             // always set (the ids decoded; multi-turn: the whole history)
  std::vector<std::pair<std::string, std::string>>
      messages;            // chat turns (role, content); empty: completions
  int32_t prompt_len = 0;  // tokens (exact with a tokenizer, estimated without)
  int32_t max_tokens = 0;
  std::optional<double> at_s;  // trace workloads: send at this offset from the start
  int64_t conversation = -1;   // multi-turn: which conversation, and which turn of it
  int32_t turn = 0;
  int32_t group = -1;  // shared-prefix: which group
};

struct WorkloadContext {
  const model::Tokenizer* tokenizer = nullptr;  // null: text prompts, ~4 characters per token
  uint64_t seed = 0;
};

class Workload {
 public:
  virtual ~Workload() = default;
  // The next request ready to send, or nullopt when the workload is exhausted or (multi-turn) the
  // requests left wait on replies. Called from one thread.
  virtual std::optional<BenchRequest> next() = 0;
  // A reply arrived (text generated for `req`); multi-turn workloads queue the conversation's next turn.
  // A request that never gets a reply (it failed) ends its conversation; on_reply(req, "") goes on.
  virtual void on_reply(const BenchRequest& req, const std::string& generated_text) {}
  // Requests this workload will produce in total, when known.
  virtual std::optional<uint64_t> size() const { return std::nullopt; }
  // True once every request has been handed out: tells "exhausted" from "waiting on replies"
  // when next() gives nullopt.
  virtual bool finished() const { return false; }
  // Entries of the input file left out as unusable (sharegpt: no human turn followed by a gpt turn).
  virtual uint64_t skipped() const { return 0; }
  virtual std::string describe() const = 0;
};

// Parses a workload from `llmd bench` flags; throws llmd::Error naming the bad option or file line.
struct WorkloadOptions {
  std::string kind = "random";  // random | shared-prefix | multi-turn | sharegpt | trace
  std::string file;             // sharegpt / trace
  uint64_t num_requests = 100;
  // random
  int32_t input_len = 256, output_len = 128;
  double range_ratio = 0.0;  // lengths uniform in [len*(1-r), len*(1+r)]
  // shared-prefix
  int32_t groups = 8, prefix_len = 512, question_len = 64, questions_per_group = 16;
  // multi-turn
  int32_t turns = 4, conversations = 16;
  int32_t trace_block_tokens = 512;  // Mooncake's hash_ids block size
};
std::unique_ptr<Workload> make_workload(const WorkloadOptions& opt, const WorkloadContext& ctx);

}  // namespace llmd::bench
