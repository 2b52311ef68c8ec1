// random: independent prompts with input/output lengths uniform in [len*(1-r), len*(1+r)], as
// vLLM's random dataset draws them.
#include <algorithm>
#include <cmath>

#include "bench/prompt_builder.hpp"
#include "bench/workload_kinds.hpp"
#include "common/error.hpp"

namespace llmd::bench {
namespace {

struct Range {
  int32_t lo, hi;
};

Range range_of(int32_t len, double r) {
  const auto lo = static_cast<int32_t>(std::floor(len * (1.0 - r)));
  const auto hi = static_cast<int32_t>(std::floor(len * (1.0 + r)));
  const int32_t a = std::max(1, lo);
  return {a, std::max(a, hi)};
}

}  // namespace

std::unique_ptr<Workload> make_random_workload(const WorkloadOptions& opt, const WorkloadContext& ctx) {
  if (opt.input_len < 1) fail("workload random: input_len must be positive (got {})", opt.input_len);
  if (opt.output_len < 1) fail("workload random: output_len must be positive (got {})", opt.output_len);
  if (!(opt.range_ratio >= 0.0 && opt.range_ratio < 1.0))
    fail("workload random: range_ratio must be in [0, 1) (got {})", opt.range_ratio);
  const Range in = range_of(opt.input_len, opt.range_ratio);
  const Range out = range_of(opt.output_len, opt.range_ratio);
  const PromptBuilder pb(ctx.tokenizer);
  std::vector<BenchRequest> reqs(opt.num_requests);
  for (uint64_t i = 0; i < opt.num_requests; ++i) {
    Rng rng(derive_seed(ctx.seed, 1, i));
    BenchRequest& r = reqs[i];
    r.id = i;
    const auto in_len = static_cast<int32_t>(rng.between(in.lo, in.hi));
    r.max_tokens = static_cast<int32_t>(rng.between(out.lo, out.hi));
    Prompt p;
    pb.append(p, rng, in_len);
    pb.fill(r, std::move(p));
  }
  return std::make_unique<PrebuiltWorkload>(
      std::move(reqs),
      fmt::format("random: {} requests, input {}..{} tokens, output {}..{} tokens{}", opt.num_requests, in.lo,
                  in.hi, out.lo, out.hi, pb.has_tokenizer() ? "" : " (text, ~4 chars/token)"));
}

}  // namespace llmd::bench
