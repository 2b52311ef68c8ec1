#pragma once
// Internal to the workloads: one factory per kind (make_workload picks), and the base of the kinds
// whose requests are all built up front, so next() costs nothing while the driver is timing.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bench/workload.hpp"

namespace llmd::bench {

std::unique_ptr<Workload> make_random_workload(const WorkloadOptions& opt, const WorkloadContext& ctx);
std::unique_ptr<Workload> make_shared_prefix_workload(const WorkloadOptions& opt, const WorkloadContext& ctx);
std::unique_ptr<Workload> make_multi_turn_workload(const WorkloadOptions& opt, const WorkloadContext& ctx);
std::unique_ptr<Workload> make_sharegpt_workload(const WorkloadOptions& opt, const WorkloadContext& ctx);
std::unique_ptr<Workload> make_trace_workload(const WorkloadOptions& opt, const WorkloadContext& ctx);

class PrebuiltWorkload : public Workload {
 public:
  PrebuiltWorkload(std::vector<BenchRequest> reqs, std::string description, uint64_t skipped = 0)
      : reqs_(std::move(reqs)), description_(std::move(description)), skipped_(skipped) {}
  std::optional<BenchRequest> next() override {
    if (next_ >= reqs_.size()) return std::nullopt;
    return std::move(reqs_[next_++]);
  }
  std::optional<uint64_t> size() const override { return reqs_.size(); }
  bool finished() const override { return next_ >= reqs_.size(); }
  uint64_t skipped() const override { return skipped_; }
  std::string describe() const override { return description_; }

 private:
  std::vector<BenchRequest> reqs_;
  size_t next_ = 0;
  std::string description_;
  uint64_t skipped_;
};

}  // namespace llmd::bench
