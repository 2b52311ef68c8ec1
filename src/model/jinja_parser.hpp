#pragma once
// Jinja2 grammar (the subset chat templates use) with Jinja2's operator precedence, over the tokens
// of jinja_lexer. Unknown filters and tests are rejected here, as Jinja2 rejects them at compile
// time, so a template the interpreter cannot run fails when it is loaded, not per request.
#include <string_view>

#include "model/jinja_ast.hpp"

namespace llmd::model::jinja {

// Throws llmd::Error "chat template syntax error at line L, column C: ...".
Body parse(std::string_view source);

}  // namespace llmd::model::jinja
