// shared-prefix: G groups of questions behind one long prefix each (the system-prompt / RAG
// shape). Requests go round robin over the groups so a cache must hold several prefixes at once.
#include "bench/prompt_builder.hpp"
#include "bench/workload_kinds.hpp"
#include "common/error.hpp"

namespace llmd::bench {

std::unique_ptr<Workload> make_shared_prefix_workload(const WorkloadOptions& opt,
                                                      const WorkloadContext& ctx) {
  if (opt.groups < 1) fail("workload shared-prefix: groups must be positive (got {})", opt.groups);
  if (opt.prefix_len < 1)
    fail("workload shared-prefix: prefix_len must be positive (got {})", opt.prefix_len);
  if (opt.question_len < 1)
    fail("workload shared-prefix: question_len must be positive (got {})", opt.question_len);
  if (opt.questions_per_group < 1)
    fail("workload shared-prefix: questions_per_group must be positive (got {})", opt.questions_per_group);
  if (opt.output_len < 1)
    fail("workload shared-prefix: output_len must be positive (got {})", opt.output_len);
  const PromptBuilder pb(ctx.tokenizer);
  const auto groups = static_cast<uint64_t>(opt.groups);
  const uint64_t total =
      std::min<uint64_t>(groups * static_cast<uint64_t>(opt.questions_per_group), opt.num_requests);

  // Distinct first tokens (while the vocabulary allows) make groups differ from their first
  // token, and questions of a group differ right after the prefix.
  Rng base(derive_seed(ctx.seed, 2));
  const uint64_t group_first = base.next();
  std::vector<Prompt> prefixes(groups);
  std::vector<uint64_t> question_first(groups);
  for (uint64_t g = 0; g < groups; ++g) {
    Rng rng(derive_seed(ctx.seed, 3, g));
    pb.append(prefixes[g], rng, opt.prefix_len, static_cast<int64_t>((group_first + g) % pb.alphabet()));
    question_first[g] = rng.next();
  }
  std::vector<BenchRequest> reqs(total);
  for (uint64_t i = 0; i < total; ++i) {
    const uint64_t g = i % groups, q = i / groups;
    Rng rng(derive_seed(ctx.seed, 4, i));
    BenchRequest& r = reqs[i];
    r.id = i;
    r.group = static_cast<int32_t>(g);
    r.max_tokens = opt.output_len;
    Prompt p = prefixes[g];
    pb.append(p, rng, opt.question_len, static_cast<int64_t>((question_first[g] + q) % pb.alphabet()));
    pb.fill(r, std::move(p));
  }
  return std::make_unique<PrebuiltWorkload>(
      std::move(reqs),
      fmt::format("shared-prefix: {} requests, {} groups x {} questions, prefix {} + question {} tokens, "
                  "output {} tokens{}",
                  total, opt.groups, opt.questions_per_group, opt.prefix_len, opt.question_len,
                  opt.output_len, pb.has_tokenizer() ? "" : " (text, ~4 chars/token)"));
}

}  // namespace llmd::bench
