#pragma once
// The chat template a command uses: `--chat-template NAME|FILE` (a built-in name or a Jinja file)
// or, when empty, the GGUF's own (ChatML when it has none). serve and route render alike.
#include <string>

#include "model/chat_template.hpp"
#include "model/gguf.hpp"
#include "model/tokenizer.hpp"

namespace llmd::cli {

model::ChatTemplate load_chat_template(const std::string& spec, const model::GgufFile& file,
                                       const model::Tokenizer& tok);

}  // namespace llmd::cli
