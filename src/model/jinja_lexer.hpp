#pragma once
// Splits a Jinja template into text and tag tokens, applying whitespace control the way Jinja2
// does with Hugging Face's settings (trim_blocks, lstrip_blocks, `-`/`+` markers, newlines
// normalised to \n and one trailing newline dropped), so the parser only sees final text.
#include <string>
#include <string_view>
#include <vector>

namespace llmd::model::jinja {

struct Token {
  enum class Type { Text, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, Int, Float, String, Op, End };
  Type type;
  std::string text;  // Text: the text; String: the unescaped value; Name/Int/Float/Op: the spelling
  int line = 0, col = 0;
};

struct LexOptions {
  bool trim_blocks = true;
  bool lstrip_blocks = true;
};

// Throws llmd::Error "line L, column C: ..." for an unterminated tag, string or comment.
std::vector<Token> lex(std::string_view source, const LexOptions& opt = {});

}  // namespace llmd::model::jinja
