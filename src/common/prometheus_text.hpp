#pragma once
// A reader of Prometheus' text exposition format (0.0.4), for what llmd scrapes: the router reads
// servers' vLLM metrics every 50 ms and `llmd bench` their prefix-cache counters. It never
// allocates per sample; a malformed line is counted and skipped, never fatal.
#include <cstddef>
#include <functional>
#include <optional>
#include <string_view>

namespace llmd::prometheus {

struct Sample {
  std::string_view name;
  std::string_view labels;  // between the braces, as written ("" when none)
  double value = 0;
};

// Calls on_sample for every sample line (comments and blank lines skipped); returns how many
// non-comment lines were malformed.
std::size_t parse(std::string_view text, const std::function<void(const Sample&)>& on_sample);

// The value of label `key` in a sample's label text, escapes left as written (vLLM's and llmd's
// label values have none); nullopt when absent or the text is malformed.
std::optional<std::string_view> label(std::string_view labels, std::string_view key);

}  // namespace llmd::prometheus
