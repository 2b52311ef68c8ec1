// Continuous batching as a client sees it: streaming /v1/completions against a running `llmd serve`
// at several concurrency levels, reporting total output tokens per second, the ratio to one request
// at a time, and TTFT / inter-token latency medians as a markdown table.
//
//   serve_concurrency_bench --base-url 127.0.0.1:8000 [--concurrency 1,16] [--requests 32]
//                           [--prompt-tokens 128] [--max-tokens 64] [--vocab 32000] [--warmup 2]
//                           [--model NAME] [--seed 1] [--min-ratio R] [--json]
//
// Prompts are random token ids in [3, vocab), different for every request (no prefix-cache hits),
// sent with ignore_eos so every request generates exactly --max-tokens. Each level runs --requests
// requests through C client coroutines (a new one starts as one finishes), on one io_context thread.
// Throughput = output tokens of all requests / wall time from the first send to the last byte.
// TTFT: send to the first chunk with text. ITL: gaps between successive text chunks (a chunk
// normally carries one token; the server holds back text that may be part of a stop string or an
// incomplete UTF-8 sequence, so a gap occasionally spans two). TPOT: per request, (last chunk −
// first chunk) / (tokens − 1), vLLM's definition.
// With --min-ratio R the exit status is 3 when the highest level's tok/s is below R × level 1's.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/asio.hpp"
#include "common/http_client.hpp"

namespace {

using llmd::asio::awaitable;
using Clock = std::chrono::steady_clock;
namespace asio = llmd::asio;
namespace http = llmd::http;
using nlohmann::json;

struct Options {
  std::string host = "127.0.0.1";
  uint16_t port = 8000;
  std::vector<int> concurrency = {1, 16};
  int requests = 32;
  int prompt_tokens = 128;
  int max_tokens = 64;
  int vocab = 32000;
  int warmup = 2;
  uint64_t seed = 1;
  std::string model;
  double min_ratio = 0;
  bool json_out = false;
};

[[noreturn]] void usage_error(const std::string& msg) {
  std::fprintf(stderr, "serve_concurrency_bench: %s (see the header of bench/serve_concurrency_bench.cpp)\n",
               msg.c_str());
  std::exit(2);
}

Options parse_args(int argc, char** argv) {
  Options o;
  auto value = [&](int& i) -> std::string {
    if (i + 1 >= argc) usage_error(fmt::format("{} needs a value", argv[i]));
    return argv[++i];
  };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--base-url") {
      std::string u = value(i);
      if (u.starts_with("http://")) u = u.substr(7);
      while (!u.empty() && u.back() == '/') u.pop_back();
      const size_t colon = u.rfind(':');
      if (colon == std::string::npos) usage_error("--base-url must be host:port");
      o.host = u.substr(0, colon);
      o.port = static_cast<uint16_t>(std::stoi(u.substr(colon + 1)));
    } else if (a == "--concurrency") {
      o.concurrency.clear();
      const std::string v = value(i);
      size_t pos = 0;
      while (pos <= v.size()) {
        const size_t comma = v.find(',', pos);
        const std::string item = v.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
        if (!item.empty()) o.concurrency.push_back(std::stoi(item));
        if (comma == std::string::npos) break;
        pos = comma + 1;
      }
      if (o.concurrency.empty()) usage_error("--concurrency needs a list such as 1,16");
    } else if (a == "--requests") {
      o.requests = std::stoi(value(i));
    } else if (a == "--prompt-tokens") {
      o.prompt_tokens = std::stoi(value(i));
    } else if (a == "--max-tokens") {
      o.max_tokens = std::stoi(value(i));
    } else if (a == "--vocab") {
      o.vocab = std::stoi(value(i));
    } else if (a == "--warmup") {
      o.warmup = std::stoi(value(i));
    } else if (a == "--seed") {
      o.seed = std::stoull(value(i));
    } else if (a == "--model") {
      o.model = value(i);
    } else if (a == "--min-ratio") {
      o.min_ratio = std::stod(value(i));
    } else if (a == "--json") {
      o.json_out = true;
    } else {
      usage_error(fmt::format("unknown argument '{}'", a));
    }
  }
  if (o.requests < 1 || o.prompt_tokens < 1 || o.max_tokens < 1 || o.vocab < 4)
    usage_error("--requests, --prompt-tokens, --max-tokens must be positive and --vocab > 3");
  for (int c : o.concurrency)
    if (c < 1) usage_error("concurrency levels must be positive");
  return o;
}

struct RequestResult {
  bool ok = false;
  std::string error;
  int tokens = 0;            // usage.completion_tokens
  double ttft = 0;           // s
  std::vector<double> gaps;  // s, between text chunks
  double tpot = 0;           // s
};

struct Level {
  int concurrency = 0;
  int requests = 0;
  int failed = 0;
  int64_t tokens = 0;
  double wall = 0;
  double tok_s = 0;
  double ttft_p50 = 0, itl_p50 = 0, tpot_p50 = 0;
};

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

class Bench {
 public:
  explicit Bench(Options o) : opt_(std::move(o)), client_(client_config(opt_)) {}

  awaitable<void> run_all() {
    if (opt_.warmup > 0) co_await run_level(1, opt_.warmup);
    for (int c : opt_.concurrency) levels_.push_back(co_await run_level(c, opt_.requests));
  }

  const std::vector<Level>& levels() const { return levels_; }
  const std::string& first_error() const { return first_error_; }

 private:
  static http::ClientConfig client_config(const Options& o) {
    http::ClientConfig c;
    int most = 1;
    for (int x : o.concurrency) most = std::max(most, x);
    c.max_idle_per_host = static_cast<size_t>(most);
    return c;
  }

  std::string body_for(uint64_t request_index) const {
    std::mt19937_64 rng(opt_.seed * 0x9E3779B97F4A7C15ULL + request_index);
    std::uniform_int_distribution<int> id(3, opt_.vocab - 1);
    std::vector<int> prompt(opt_.prompt_tokens);
    for (int& t : prompt) t = id(rng);
    json b = {{"prompt", prompt}, {"max_tokens", opt_.max_tokens},
              {"temperature", 0}, {"ignore_eos", true},
              {"stream", true},   {"stream_options", {{"include_usage", true}}}};
    if (!opt_.model.empty()) b["model"] = opt_.model;
    return b.dump();
  }

  awaitable<RequestResult> one_request(uint64_t index) {
    struct State {
      std::string buf;
      RequestResult r;
      Clock::time_point start, first, last;
      bool seen = false;
    };
    auto st = std::make_shared<State>();
    std::string host = opt_.host;
    std::string method = "POST";
    std::string target = "/v1/completions";
    std::string body = body_for(index);
    http::Headers headers{{"Content-Type", "application/json"}};
    http::ChunkCallback on_chunk = [st](const http::ClientResponse& head,
                                        std::string_view piece) -> awaitable<bool> {
      if (head.status != 200) {
        st->buf.append(piece);
        co_return true;
      }
      const auto now = Clock::now();
      st->buf.append(piece);
      size_t end;
      while ((end = st->buf.find("\n\n")) != std::string::npos) {
        const std::string event = st->buf.substr(0, end);
        st->buf.erase(0, end + 2);
        if (!event.starts_with("data: ")) continue;
        const std::string_view data = std::string_view(event).substr(6);
        if (data == "[DONE]") continue;
        const json j = json::parse(data, nullptr, false);
        if (j.is_discarded()) continue;
        if (j.contains("usage") && j["usage"].is_object())
          st->r.tokens = j["usage"]["completion_tokens"].get<int>();
        bool text = false;
        if (j.contains("choices"))
          for (const auto& c : j["choices"])
            if (c.contains("text") && !c["text"].get<std::string>().empty()) text = true;
        if (!text) continue;
        if (!st->seen) {
          st->first = now;
          st->seen = true;
        } else {
          st->r.gaps.push_back(std::chrono::duration<double>(now - st->last).count());
        }
        st->last = now;
      }
      co_return true;
    };
    st->start = Clock::now();
    try {
      const http::ClientResponse head =
          co_await client_.stream(host, opt_.port, method, target, body, headers, on_chunk);
      if (head.status != 200) {
        st->r.error = fmt::format("HTTP {}: {}", head.status, st->buf.substr(0, 300));
        co_return st->r;
      }
    } catch (const std::exception& e) {
      st->r.error = e.what();
      co_return st->r;
    }
    if (!st->seen || st->r.tokens <= 0) {
      st->r.error = "no text or no usage in the stream";
      co_return st->r;
    }
    st->r.ttft = std::chrono::duration<double>(st->first - st->start).count();
    if (st->r.tokens > 1)
      st->r.tpot = std::chrono::duration<double>(st->last - st->first).count() / (st->r.tokens - 1);
    st->r.ok = true;
    co_return st->r;
  }

  // One client: takes the next request of the level until none are left.
  awaitable<void> worker(int n, std::vector<RequestResult>& results) {
    while (next_in_level_ < n) {
      const int i = next_in_level_++;
      const uint64_t index = next_request_++;
      results[i] = co_await one_request(index);
    }
  }

  awaitable<Level> run_level(int concurrency, int n) {
    next_in_level_ = 0;
    std::vector<RequestResult> results(n);
    const int workers = std::min(concurrency, n);
    auto ex = co_await asio::this_coro::executor;
    // Completion counting without extra machinery: each worker decrements, the last one fires.
    auto remaining = std::make_shared<int>(workers);
    asio::steady_timer all_done(ex, Clock::time_point::max());
    const auto t0 = Clock::now();
    for (int w = 0; w < workers; ++w) {
      asio::co_spawn(ex, worker(n, results), [remaining, &all_done](std::exception_ptr) {
        if (--*remaining == 0) all_done.cancel();
      });
    }
    boost::system::error_code ec;
    if (*remaining > 0) co_await all_done.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    const double wall = std::chrono::duration<double>(Clock::now() - t0).count();

    Level L;
    L.concurrency = concurrency;
    L.requests = n;
    L.wall = wall;
    std::vector<double> ttft, gaps, tpot;
    for (const RequestResult& r : results) {
      if (!r.ok) {
        ++L.failed;
        if (first_error_.empty()) first_error_ = r.error;
        continue;
      }
      L.tokens += r.tokens;
      ttft.push_back(r.ttft);
      gaps.insert(gaps.end(), r.gaps.begin(), r.gaps.end());
      if (r.tokens > 1) tpot.push_back(r.tpot);
    }
    L.tok_s = L.tokens / wall;
    L.ttft_p50 = median(ttft);
    L.itl_p50 = median(gaps);
    L.tpot_p50 = median(tpot);
    co_return L;
  }

  Options opt_;
  http::Client client_;
  std::vector<Level> levels_;
  std::string first_error_;
  int next_in_level_ = 0;
  uint64_t next_request_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  const Options opt = parse_args(argc, argv);
  asio::io_context io;
  Bench bench(opt);
  std::exception_ptr failure;
  asio::co_spawn(io, bench.run_all(), [&](std::exception_ptr e) { failure = e; });
  io.run();
  if (failure) {
    try {
      std::rethrow_exception(failure);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "serve_concurrency_bench: %s\n", e.what());
      return 1;
    }
  }

  const auto& levels = bench.levels();
  const Level* base = nullptr;
  for (const Level& L : levels)
    if (L.concurrency == 1) base = &L;
  if (opt.json_out) {
    json out = json::array();
    for (const Level& L : levels)
      out.push_back({{"concurrency", L.concurrency},
                     {"requests", L.requests},
                     {"failed", L.failed},
                     {"output_tokens", L.tokens},
                     {"wall_s", L.wall},
                     {"output_tok_s", L.tok_s},
                     {"ratio_to_c1", base && base->tok_s > 0 ? json(L.tok_s / base->tok_s) : json(nullptr)},
                     {"ttft_p50_ms", L.ttft_p50 * 1e3},
                     {"itl_p50_ms", L.itl_p50 * 1e3},
                     {"tpot_p50_ms", L.tpot_p50 * 1e3}});
    std::puts(out.dump().c_str());
  } else {
    std::printf(
        "prompt %d tokens (random ids, no prefix hits), max_tokens %d, ignore_eos, streaming; %d requests "
        "per level\n\n",
        opt.prompt_tokens, opt.max_tokens, opt.requests);
    std::printf(
        "| concurrency | output tok/s | vs. concurrency 1 | TTFT p50 ms | ITL p50 ms | TPOT p50 ms | wall s "
        "| failed |\n");
    std::printf("|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (const Level& L : levels) {
      const std::string ratio = base && base->tok_s > 0 ? fmt::format("{:.2f}x", L.tok_s / base->tok_s) : "-";
      std::printf("| %d | %.1f | %s | %.1f | %.1f | %.1f | %.2f | %d |\n", L.concurrency, L.tok_s,
                  ratio.c_str(), L.ttft_p50 * 1e3, L.itl_p50 * 1e3, L.tpot_p50 * 1e3, L.wall, L.failed);
    }
  }
  int failed = 0;
  for (const Level& L : levels) failed += L.failed;
  if (failed) {
    std::fprintf(stderr, "serve_concurrency_bench: %d requests failed; first: %s\n", failed,
                 bench.first_error().c_str());
    return 1;
  }
  if (opt.min_ratio > 0 && base && !levels.empty()) {
    const Level& top = *std::max_element(levels.begin(), levels.end(), [](const Level& a, const Level& b) {
      return a.concurrency < b.concurrency;
    });
    if (top.tok_s < opt.min_ratio * base->tok_s) {
      std::fprintf(
          stderr,
          "serve_concurrency_bench: concurrency %d gives %.2fx concurrency 1, below --min-ratio %.2f\n",
          top.concurrency, top.tok_s / base->tok_s, opt.min_ratio);
      return 3;
    }
  }
  return 0;
}
