// trace FILE: a Mooncake trace (JSONL of timestamp, input_length, output_length, hash_ids). Each
// hash id names one block of trace_block_tokens tokens whose content comes from (seed, id) alone,
// so two requests share exactly the blocks they share ids for — the prefix-cache shape of the
// original traffic. Prompts are built when handed out: real traces are too big to hold built.
#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>
#include <string_view>

#include "bench/prompt_builder.hpp"
#include "bench/workload_file.hpp"
#include "bench/workload_kinds.hpp"
#include "common/error.hpp"

namespace llmd::bench {
namespace {

struct TraceRecord {
  double timestamp_ms = 0;
  int32_t input_length = 0;
  int32_t output_length = 0;
  std::vector<int64_t> hash_ids;
};

int32_t length_field(const nlohmann::json& j, const char* key, const std::string& where) {
  const auto it = j.find(key);
  if (it == j.end()) fail("{}: missing '{}'", where, key);
  if (!it->is_number_integer()) fail("{}: '{}' must be an integer", where, key);
  const int64_t v = it->get<int64_t>();
  if (v < 0) fail("{}: '{}' is negative ({})", where, key, v);
  if (v > std::numeric_limits<int32_t>::max()) fail("{}: '{}' is too large ({})", where, key, v);
  return static_cast<int32_t>(v);
}

TraceRecord parse_line(std::string_view line, const std::string& where, int32_t block) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not JSON: {}", where, e.what());
  }
  if (!j.is_object()) fail("{}: expected a JSON object", where);
  TraceRecord r;
  const auto ts = j.find("timestamp");
  if (ts == j.end()) fail("{}: missing 'timestamp'", where);
  if (!ts->is_number()) fail("{}: 'timestamp' must be a number", where);
  r.timestamp_ms = ts->get<double>();
  if (!(r.timestamp_ms >= 0)) fail("{}: 'timestamp' is negative ({})", where, r.timestamp_ms);
  r.input_length = length_field(j, "input_length", where);
  r.output_length = length_field(j, "output_length", where);
  if (r.input_length == 0) fail("{}: 'input_length' is 0", where);
  const auto ids = j.find("hash_ids");
  if (ids == j.end()) fail("{}: missing 'hash_ids'", where);
  if (!ids->is_array()) fail("{}: 'hash_ids' must be an array", where);
  for (const auto& id : *ids) {
    if (!id.is_number_integer()) fail("{}: 'hash_ids' must hold integers", where);
    r.hash_ids.push_back(id.get<int64_t>());
  }
  // n blocks hold (n-1)*block+1 .. n*block tokens: the last one may be partial.
  const auto n = static_cast<int64_t>(r.hash_ids.size());
  if (r.input_length > n * block || r.input_length <= (n - 1) * block)
    fail("{}: input_length {} does not fit {} hash_ids of {}-token blocks", where, r.input_length, n, block);
  return r;
}

class TraceWorkload final : public Workload {
 public:
  TraceWorkload(std::string file, std::vector<TraceRecord> recs, int32_t block, const WorkloadContext& ctx)
      : file_(std::move(file)), recs_(std::move(recs)), block_(block), seed_(ctx.seed), pb_(ctx.tokenizer) {}

  std::optional<BenchRequest> next() override {
    if (next_ >= recs_.size()) return std::nullopt;
    const TraceRecord& t = recs_[next_];
    BenchRequest r;
    r.id = next_++;
    r.at_s = (t.timestamp_ms - recs_.front().timestamp_ms) / 1000.0;
    r.max_tokens = std::max(1, t.output_length);
    Prompt p;
    int32_t left = t.input_length;
    for (int64_t id : t.hash_ids) {
      // A cut block is the start of the whole one: the same stream, stopped early.
      Rng rng(derive_seed(seed_, 7, static_cast<uint64_t>(id)));
      pb_.append(p, rng, std::min(left, block_));
      left -= std::min(left, block_);
    }
    pb_.fill(r, std::move(p));
    return r;
  }
  std::optional<uint64_t> size() const override { return recs_.size(); }
  bool finished() const override { return next_ >= recs_.size(); }
  std::string describe() const override {
    const double span = recs_.empty() ? 0 : (recs_.back().timestamp_ms - recs_.front().timestamp_ms) / 1000.0;
    return fmt::format("trace {}: {} requests over {:.1f} s, {}-token blocks{}", file_, recs_.size(), span,
                       block_, pb_.has_tokenizer() ? "" : " (text, ~4 chars/token)");
  }

 private:
  std::string file_;
  std::vector<TraceRecord> recs_;
  int32_t block_;
  uint64_t seed_;
  PromptBuilder pb_;
  size_t next_ = 0;
};

}  // namespace

std::unique_ptr<Workload> make_trace_workload(const WorkloadOptions& opt, const WorkloadContext& ctx) {
  if (opt.trace_block_tokens < 1)
    fail("workload trace: trace_block_tokens must be positive (got {})", opt.trace_block_tokens);
  const std::string data = read_workload_file(opt.file);
  std::vector<TraceRecord> recs;
  size_t line_no = 0;
  for (size_t pos = 0; pos < data.size();) {
    size_t end = data.find('\n', pos);
    if (end == std::string::npos) end = data.size();
    std::string_view line(data.data() + pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;  // blank lines are no requests
    recs.push_back(parse_line(line, fmt::format("{}:{}", opt.file, line_no), opt.trace_block_tokens));
  }
  if (recs.empty()) fail("{}: no requests", opt.file);
  // Arrival order is time order; for a sorted trace this keeps the file's order.
  std::stable_sort(recs.begin(), recs.end(), [](const TraceRecord& a, const TraceRecord& b) {
    return a.timestamp_ms < b.timestamp_ms;
  });
  if (recs.size() > opt.num_requests) recs.resize(opt.num_requests);
  return std::make_unique<TraceWorkload>(opt.file, std::move(recs), opt.trace_block_tokens, ctx);
}

}  // namespace llmd::bench
