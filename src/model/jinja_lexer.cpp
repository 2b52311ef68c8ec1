#include "model/jinja_lexer.hpp"

#include <algorithm>
#include <cstring>

#include "common/error.hpp"

namespace llmd::model::jinja {
namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool is_name_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

int hex_val(char c) {
  if (is_digit(c)) return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

class Lexer {
 public:
  Lexer(std::string src, const LexOptions& opt) : src_(std::move(src)), opt_(opt) {
    line_starts_.push_back(0);
    for (size_t i = 0; i < src_.size(); ++i)
      if (src_[i] == '\n') line_starts_.push_back(i + 1);
  }

  std::vector<Token> run() {
    size_t pos = 0;
    while (true) {
      const size_t open = find_open(pos);
      std::string text = src_.substr(pos, open - pos);
      if (open == src_.size()) {
        apply_left(text);
        emit_text(std::move(text), pos);
        break;
      }
      const char kind = src_[open + 1];  // '{', '%' or '#'
      char marker = open + 2 < src_.size() ? src_[open + 2] : 0;
      if (marker != '-' && marker != '+') marker = 0;
      apply_left(text);
      if (marker == '-') {
        rstrip(text);
      } else if (marker != '+' && kind != '{' && opt_.lstrip_blocks) {
        const size_t nl = text.rfind('\n');
        const size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
        if ((l_pos > 0 || line_starting_) &&
            std::all_of(text.begin() + l_pos, text.end(), [](char c) { return is_space(c); }))
          text.resize(l_pos);
      }
      emit_text(std::move(text), pos);
      size_t p = open + 2 + (marker ? 1 : 0);
      if (kind == '#') {
        const size_t end = src_.find("#}", p);
        if (end == std::string::npos) error(open, "unterminated comment");
        close(end > p && src_[end - 1] == '-' ? '-' : end > p && src_[end - 1] == '+' ? '+' : 0, true);
        pos = end + 2;
        continue;
      }
      if (kind == '%' && is_raw(p)) {
        pos = lex_raw(open, p);
        continue;
      }
      out_.push_back({kind == '{' ? Token::Type::VarBegin : Token::Type::BlockBegin, "", 0, 0});
      set_pos(out_.back(), open);
      pos = lex_tag(p, kind == '{');
    }
    out_.push_back({Token::Type::End, "", 0, 0});
    set_pos(out_.back(), src_.size());
    return std::move(out_);
  }

 private:
  size_t find_open(size_t pos) const {
    while (true) {
      const size_t i = src_.find('{', pos);
      if (i == std::string::npos || i + 1 >= src_.size()) return src_.size();
      const char c = src_[i + 1];
      if (c == '{' || c == '%' || c == '#') return i;
      pos = i + 1;
    }
  }

  // What the previous tag's closing consumes from the following text.
  void apply_left(std::string& text) {
    if (prev_close_ == '-') {
      size_t n = 0;
      while (n < text.size() && is_space(text[n])) ++n;
      line_starting_ = n > 0 && text[n - 1] == '\n';
      text.erase(0, n);
    } else if (prev_close_ == 't' && !text.empty() && text[0] == '\n') {
      text.erase(0, 1);
      line_starting_ = true;
    } else {
      line_starting_ = prev_close_ == 's';  // 's': start of the template
    }
  }

  static void rstrip(std::string& text) {
    size_t n = text.size();
    while (n > 0 && is_space(text[n - 1])) --n;
    text.resize(n);
  }

  void emit_text(std::string text, size_t at) {
    if (text.empty()) return;
    out_.push_back({Token::Type::Text, std::move(text), 0, 0});
    set_pos(out_.back(), at);
  }

  // marker: the character before the closing delimiter ('-', '+' or 0); block: a {% %} or {# #}.
  void close(char marker, bool block) {
    if (marker == '-')
      prev_close_ = '-';
    else if (block && marker != '+' && opt_.trim_blocks)
      prev_close_ = 't';
    else
      prev_close_ = 'n';
  }

  size_t skip_space(size_t p) const {
    while (p < src_.size() && is_space(src_[p])) ++p;
    return p;
  }

  bool is_raw(size_t p) const {
    p = skip_space(p);
    if (src_.compare(p, 3, "raw") != 0) return false;
    p = skip_space(p + 3);
    if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) ++p;
    return src_.compare(p, 2, "%}") == 0;
  }

  size_t lex_raw(size_t open, size_t p) {
    p = skip_space(p) + 3;
    p = skip_space(p);
    const bool strip_after_begin = src_[p] == '-';
    if (src_[p] == '-' || src_[p] == '+') ++p;
    p += 2;
    size_t search = p;
    while (true) {
      const size_t e = src_.find("{%", search);
      if (e == std::string::npos) error(open, "unterminated raw block");
      size_t q = e + 2;
      const bool strip_before_end = q < src_.size() && src_[q] == '-';
      if (q < src_.size() && (src_[q] == '-' || src_[q] == '+')) ++q;
      q = skip_space(q);
      if (src_.compare(q, 6, "endraw") != 0) {
        search = e + 2;
        continue;
      }
      q = skip_space(q + 6);
      char marker = 0;
      if (q < src_.size() && (src_[q] == '-' || src_[q] == '+')) marker = src_[q++];
      if (src_.compare(q, 2, "%}") != 0) error(e, "expected '%}' after endraw");
      std::string text = src_.substr(p, e - p);
      if (strip_after_begin) text.erase(0, std::min(text.size(), text.find_first_not_of(" \t\n\r\f\v")));
      if (strip_before_end) rstrip(text);
      emit_text(std::move(text), p);
      close(marker, true);
      return q + 2;
    }
  }

  size_t lex_tag(size_t p, bool var) {
    const char* closer = var ? "}}" : "%}";
    int depth = 0;
    while (true) {
      p = skip_space(p);
      if (p >= src_.size()) error(p, var ? "unterminated '{{'" : "unterminated '{%'");
      if (depth == 0) {
        char marker = 0;
        size_t q = p;
        if ((src_[q] == '-' || (!var && src_[q] == '+')) && src_.compare(q + 1, 2, closer) == 0)
          marker = src_[q++];
        if (src_.compare(q, 2, closer) == 0) {
          out_.push_back({var ? Token::Type::VarEnd : Token::Type::BlockEnd, "", 0, 0});
          set_pos(out_.back(), q);
          close(marker, !var);
          return q + 2;
        }
      }
      const char c = src_[p];
      const size_t start = p;
      if (is_name_start(c)) {
        while (p < src_.size() && (is_name_start(src_[p]) || is_digit(src_[p]))) ++p;
        push(Token::Type::Name, src_.substr(start, p - start), start);
      } else if (is_digit(c)) {
        bool is_float = false;
        while (p < src_.size() && (is_digit(src_[p]) || src_[p] == '_')) ++p;
        if (p + 1 < src_.size() && src_[p] == '.' && is_digit(src_[p + 1])) {
          is_float = true;
          ++p;
          while (p < src_.size() && (is_digit(src_[p]) || src_[p] == '_')) ++p;
        }
        if (p < src_.size() && (src_[p] == 'e' || src_[p] == 'E')) {
          size_t q = p + 1;
          if (q < src_.size() && (src_[q] == '+' || src_[q] == '-')) ++q;
          if (q < src_.size() && is_digit(src_[q])) {
            is_float = true;
            p = q;
            while (p < src_.size() && is_digit(src_[p])) ++p;
          }
        }
        std::string num = src_.substr(start, p - start);
        std::erase(num, '_');
        push(is_float ? Token::Type::Float : Token::Type::Int, std::move(num), start);
      } else if (c == '\'' || c == '"') {
        p = lex_string(p);
      } else {
        static const char* const two[] = {"//", "**", "==", "!=", "<=", ">="};
        std::string op;
        for (const char* t : two)
          if (src_.compare(p, 2, t) == 0) op = t;
        if (op.empty()) {
          if (!std::strchr("+-*/%~<>=()[]{},.:|", c)) error(p, fmt::format("unexpected character '{}'", c));
          op = std::string(1, c);
          if (c == '(' || c == '[' || c == '{') ++depth;
          if ((c == ')' || c == ']' || c == '}') && depth > 0) --depth;
        }
        p += op.size();
        push(Token::Type::Op, std::move(op), start);
      }
    }
  }

  // Python string literal escapes, as Jinja2 decodes them ("unicode-escape"); an unknown escape
  // keeps its backslash.
  size_t lex_string(size_t p) {
    const size_t start = p;
    const char q = src_[p++];
    std::string val;
    while (true) {
      if (p >= src_.size()) error(start, "unterminated string");
      const char c = src_[p];
      if (c == q) break;
      if (c != '\\') {
        val += c;
        ++p;
        continue;
      }
      if (p + 1 >= src_.size()) error(start, "unterminated string");
      const char e = src_[p + 1];
      p += 2;
      switch (e) {
        case 'n':
          val += '\n';
          break;
        case 't':
          val += '\t';
          break;
        case 'r':
          val += '\r';
          break;
        case 'b':
          val += '\b';
          break;
        case 'f':
          val += '\f';
          break;
        case 'v':
          val += '\v';
          break;
        case 'a':
          val += '\a';
          break;
        case '\\':
          val += '\\';
          break;
        case '\'':
          val += '\'';
          break;
        case '"':
          val += '"';
          break;
        case '\n':
          break;
        case 'x':
        case 'u':
        case 'U': {
          const int n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          uint32_t cp = 0;
          for (int i = 0; i < n; ++i) {
            const int h = p + i < src_.size() ? hex_val(src_[p + i]) : -1;
            if (h < 0) error(p - 2, "truncated \\x/\\u escape in string");
            cp = cp * 16 + static_cast<uint32_t>(h);
          }
          if (cp > 0x10FFFF) error(p - 2, "illegal Unicode character in string");
          p += n;
          append_utf8(val, cp);
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            uint32_t cp = static_cast<uint32_t>(e - '0');
            for (int i = 0; i < 2 && p < src_.size() && src_[p] >= '0' && src_[p] <= '7'; ++i)
              cp = cp * 8 + static_cast<uint32_t>(src_[p++] - '0');
            append_utf8(val, cp);
          } else {
            val += '\\';
            val += e;
          }
      }
    }
    push(Token::Type::String, std::move(val), start);
    return p + 1;
  }

  void push(Token::Type t, std::string text, size_t at) {
    out_.push_back({t, std::move(text), 0, 0});
    set_pos(out_.back(), at);
  }

  void set_pos(Token& t, size_t at) const {
    const auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), at) - 1;
    t.line = static_cast<int>(it - line_starts_.begin()) + 1;
    t.col = static_cast<int>(at - *it) + 1;
  }

  [[noreturn]] void error(size_t at, const std::string& what) const {
    Token t;
    set_pos(t, at);
    fail("chat template syntax error at line {}, column {}: {}", t.line, t.col, what);
  }

  std::string src_;
  LexOptions opt_;
  std::vector<size_t> line_starts_;
  std::vector<Token> out_;
  char prev_close_ = 's';
  bool line_starting_ = true;
};

}  // namespace

std::vector<Token> lex(std::string_view source, const LexOptions& opt) {
  // Jinja2 normalises \r\n and \r to \n and drops one trailing newline (keep_trailing_newline=False).
  std::string src;
  src.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      src += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      src += source[i];
    }
  }
  if (!src.empty() && src.back() == '\n') src.pop_back();
  return Lexer(std::move(src), opt).run();
}

}  // namespace llmd::model::jinja
