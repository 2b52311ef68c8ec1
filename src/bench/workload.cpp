#include "bench/workload.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "bench/workload_file.hpp"
#include "bench/workload_kinds.hpp"
#include "common/error.hpp"

namespace llmd::bench {

std::string read_workload_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open: {}", path, std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail("{}: cannot read", path);
  return ss.str();
}

std::unique_ptr<Workload> make_workload(const WorkloadOptions& opt, const WorkloadContext& ctx) {
  if (opt.num_requests == 0) fail("workload {}: num_requests must be positive", opt.kind);
  const bool needs_file = opt.kind == "sharegpt" || opt.kind == "trace";
  if (needs_file && opt.file.empty()) fail("workload {} needs a FILE", opt.kind);
  if (!needs_file && !opt.file.empty()) fail("workload {} takes no FILE (got {})", opt.kind, opt.file);
  if (opt.kind == "random") return make_random_workload(opt, ctx);
  if (opt.kind == "shared-prefix") return make_shared_prefix_workload(opt, ctx);
  if (opt.kind == "multi-turn") return make_multi_turn_workload(opt, ctx);
  if (opt.kind == "sharegpt") return make_sharegpt_workload(opt, ctx);
  if (opt.kind == "trace") return make_trace_workload(opt, ctx);
  fail("unknown workload '{}' (random, shared-prefix, multi-turn, sharegpt, trace)", opt.kind);
}

}  // namespace llmd::bench
