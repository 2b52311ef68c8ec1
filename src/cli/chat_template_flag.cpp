#include "cli/chat_template_flag.hpp"

#include <filesystem>
#include <fstream>
#include <sstream>

namespace llmd::cli {

model::ChatTemplate load_chat_template(const std::string& spec, const model::GgufFile& file,
                                       const model::Tokenizer& tok) {
  model::ChatTemplateOptions opt;
  opt.bos_token = tok.token_to_piece(tok.bos(), true);
  opt.eos_token = tok.token_to_piece(tok.eos(), true);
  if (spec.empty()) return model::ChatTemplate::from_gguf(file, opt);
  if (std::filesystem::is_regular_file(spec)) {
    std::ifstream in(spec);
    std::stringstream ss;
    ss << in.rdbuf();
    return model::ChatTemplate::from_source(ss.str(), opt);
  }
  return model::ChatTemplate::builtin(spec, opt);
}

}  // namespace llmd::cli
