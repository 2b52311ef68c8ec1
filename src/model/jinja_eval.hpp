#pragma once
// Runs a parsed template. Templates come from GGUF files, i.e. from anyone, so every render is
// bounded: output size, loop iterations, macro recursion and total evaluation steps each end the
// render with an llmd::Error instead of exhausting memory, CPU or the stack.
#include <string>
#include <utility>
#include <vector>

#include "common/error.hpp"
#include "model/jinja_ast.hpp"

namespace llmd::model::jinja {

struct RenderLimits {
  size_t max_output_bytes = size_t{16} << 20;  // also caps every string or list a template builds
  size_t max_loop_iterations = 1'000'000;      // summed over all loops of one render
  int max_call_depth = 32;                     // nested macro calls
  size_t max_steps = 50'000'000;               // expression evaluations
};

// raise_exception() in a template: its message is meant for the client, so it is kept verbatim
// (other render errors are prefixed with the template position).
class TemplateRaised : public Error {
 public:
  using Error::Error;
};

// `globals` are visible to the whole template (the render's variables and extra functions);
// Jinja2's own globals (range, namespace, dict) are added beneath them.
std::string render(const Body& body, const std::vector<std::pair<std::string, Value>>& globals,
                   const RenderLimits& limits = {});

}  // namespace llmd::model::jinja
