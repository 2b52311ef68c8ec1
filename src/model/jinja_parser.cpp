#include "model/jinja_parser.hpp"

#include <charconv>
#include <initializer_list>

#include "common/error.hpp"
#include "model/jinja_builtins.hpp"
#include "model/jinja_lexer.hpp"

namespace llmd::model::jinja {
namespace {

// Deeper nesting than any real template; bounds the parser's (and interpreter's) C++ recursion on
// hostile input.
constexpr int kMaxNesting = 200;

using T = Token::Type;
using K = Expr::Kind;

class Parser {
 public:
  explicit Parser(std::vector<Token> toks) : t_(std::move(toks)) {}

  Body run() {
    auto [body, end] = parse_body({});
    return std::move(body);
  }

 private:
  // ---- statements ----

  // Parses until a {% word %} in `stops` (returned, its BlockBegin and name consumed) or the end.
  std::pair<Body, std::string> parse_body(std::initializer_list<std::string_view> stops) {
    Body body;
    while (true) {
      const Token& tok = cur();
      if (tok.type == T::End) {
        if (stops.size() != 0)
          error(tok, fmt::format("unexpected end of template, expected '{}'", *stops.begin()));
        return {std::move(body), ""};
      }
      if (tok.type == T::Text) {
        auto s = stmt(Stmt::Kind::Text, tok);
        s->text = tok.text;
        body.push_back(std::move(s));
        ++i_;
      } else if (tok.type == T::VarBegin) {
        auto s = stmt(Stmt::Kind::Output, tok);
        ++i_;
        s->expr = parse_expr();
        expect(T::VarEnd, "'}}'");
        body.push_back(std::move(s));
      } else if (tok.type == T::BlockBegin) {
        ++i_;
        const Token& kw = cur();
        if (kw.type != T::Name) error(kw, "expected a statement name");
        for (auto stop : stops)
          if (kw.text == stop) {
            ++i_;
            return {std::move(body), kw.text};
          }
        body.push_back(parse_statement());
      } else {
        error(tok, "unexpected token");
      }
    }
  }

  std::unique_ptr<Stmt> parse_statement() {
    const Token& kw = cur();
    const std::string name = kw.text;
    if (++depth_ > kMaxNesting) error(kw, "blocks nested too deeply");
    ++i_;
    std::unique_ptr<Stmt> s;
    if (name == "if") {
      s = stmt(Stmt::Kind::If, kw);
      s->conds.push_back(parse_expr());
      expect(T::BlockEnd, "'%}'");
      while (true) {
        auto [body, end] = parse_body({"elif", "else", "endif"});
        s->bodies.push_back(std::move(body));
        if (end == "elif") {
          s->conds.push_back(parse_expr());
          expect(T::BlockEnd, "'%}'");
        } else if (end == "else") {
          expect(T::BlockEnd, "'%}'");
          auto [eb, e2] = parse_body({"endif"});
          s->bodies.push_back(std::move(eb));
          expect(T::BlockEnd, "'%}'");
          break;
        } else {
          expect(T::BlockEnd, "'%}'");
          break;
        }
      }
    } else if (name == "for") {
      s = stmt(Stmt::Kind::For, kw);
      do {
        s->targets.push_back(expect_name());
      } while (accept_op(","));
      if (!accept_name("in")) error(cur(), "expected 'in'");
      s->expr = parse_expr(/*with_cond=*/false);
      if (accept_name("if")) s->cond = parse_expr(false);
      if (accept_name("recursive")) error(cur(), "recursive loops are not supported");
      expect(T::BlockEnd, "'%}'");
      ++loop_depth_;
      auto [body, end] = parse_body({"else", "endfor"});
      --loop_depth_;
      s->bodies.push_back(std::move(body));
      expect(T::BlockEnd, "'%}'");
      if (end == "else") {
        auto [eb, e2] = parse_body({"endfor"});
        s->bodies.push_back(std::move(eb));
        expect(T::BlockEnd, "'%}'");
      }
    } else if (name == "set") {
      s = stmt(Stmt::Kind::Set, kw);
      s->targets.push_back(expect_name());
      if (accept_op(".")) s->targets.push_back(expect_name());
      if (accept_op("=")) {
        s->expr = parse_expr();
        expect(T::BlockEnd, "'%}'");
      } else {
        if (s->targets.size() != 1) error(cur(), "expected '='");
        s->kind = Stmt::Kind::SetBlock;
        expect(T::BlockEnd, "'%}'");
        auto [body, end] = parse_body({"endset"});
        s->bodies.push_back(std::move(body));
        expect(T::BlockEnd, "'%}'");
      }
    } else if (name == "macro") {
      s = stmt(Stmt::Kind::Macro, kw);
      s->targets.push_back(expect_name());
      expect_op("(");
      if (!accept_op(")")) {
        do {
          s->targets.push_back(expect_name());
          s->conds.push_back(accept_op("=") ? parse_expr() : nullptr);
        } while (accept_op(","));
        expect_op(")");
      }
      expect(T::BlockEnd, "'%}'");
      auto [body, end] = parse_body({"endmacro"});
      s->bodies.push_back(std::move(body));
      accept_name(s->targets[0]);
      expect(T::BlockEnd, "'%}'");
    } else if (name == "filter") {
      s = stmt(Stmt::Kind::FilterBlock, kw);
      s->expr = parse_filter(nullptr);
      expect(T::BlockEnd, "'%}'");
      auto [body, end] = parse_body({"endfilter"});
      s->bodies.push_back(std::move(body));
      expect(T::BlockEnd, "'%}'");
    } else if (name == "generation") {
      // transformers' AssistantTracker extension: only marks assistant text, renders it unchanged.
      s = stmt(Stmt::Kind::Scope, kw);
      expect(T::BlockEnd, "'%}'");
      auto [body, end] = parse_body({"endgeneration"});
      s->bodies.push_back(std::move(body));
      expect(T::BlockEnd, "'%}'");
    } else if (name == "break" || name == "continue") {
      if (loop_depth_ == 0) error(kw, fmt::format("'{}' outside a loop", name));
      s = stmt(name == "break" ? Stmt::Kind::Break : Stmt::Kind::Continue, kw);
      expect(T::BlockEnd, "'%}'");
    } else {
      error(kw, fmt::format("unknown or unsupported statement '{}'", name));
    }
    --depth_;
    return s;
  }

  // ---- expressions, lowest precedence first (Jinja2's parser.py) ----

  ExprPtr parse_expr(bool with_cond = true) {
    if (++depth_ > kMaxNesting) error(cur(), "expression nested too deeply");
    ExprPtr e = with_cond ? parse_cond() : parse_or();
    --depth_;
    return e;
  }

  ExprPtr parse_cond() {
    ExprPtr e = parse_or();
    while (is_name("if")) {
      auto c = expr(K::Cond, cur());
      ++i_;
      c->args.push_back(parse_or());
      c->args.push_back(std::move(e));
      c->args.push_back(accept_name("else") ? parse_cond() : nullptr);
      e = std::move(c);
    }
    return e;
  }

  ExprPtr parse_or() {
    ExprPtr e = parse_and();
    while (is_name("or")) e = binary("or", std::move(e), [&] { return parse_and(); });
    return e;
  }

  ExprPtr parse_and() {
    ExprPtr e = parse_not();
    while (is_name("and")) e = binary("and", std::move(e), [&] { return parse_not(); });
    return e;
  }

  ExprPtr parse_not() {
    if (is_name("not")) {
      auto e = expr(K::Unary, cur());
      e->name = "not";
      ++i_;
      e->args.push_back(nest([&] { return parse_not(); }));
      return e;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    ExprPtr first = parse_math1();
    ExprPtr e;
    while (true) {
      std::string op;
      const Token& tok = cur();
      if (tok.type == T::Op && (tok.text == "==" || tok.text == "!=" || tok.text == "<" || tok.text == "<=" ||
                                tok.text == ">" || tok.text == ">=")) {
        op = tok.text;
        ++i_;
      } else if (is_name("in")) {
        op = "in";
        ++i_;
      } else if (is_name("not") && peek(1).type == T::Name && peek(1).text == "in") {
        op = "notin";
        i_ += 2;
      } else {
        break;
      }
      if (!e) {
        e = expr(K::Compare, tok);
        e->args.push_back(std::move(first));
      }
      e->ops.push_back(op);
      e->args.push_back(parse_math1());
    }
    return e ? std::move(e) : std::move(first);
  }

  ExprPtr parse_math1() {
    ExprPtr e = parse_concat();
    while (is_op("+") || is_op("-")) e = binary(cur().text, std::move(e), [&] { return parse_concat(); });
    return e;
  }

  ExprPtr parse_concat() {
    ExprPtr e = parse_math2();
    while (is_op("~")) e = binary("~", std::move(e), [&] { return parse_math2(); });
    return e;
  }

  ExprPtr parse_math2() {
    ExprPtr e = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%"))
      e = binary(cur().text, std::move(e), [&] { return parse_pow(); });
    return e;
  }

  ExprPtr parse_pow() {
    ExprPtr e = parse_unary(true);
    while (is_op("**")) e = binary("**", std::move(e), [&] { return parse_unary(true); });
    return e;
  }

  ExprPtr parse_unary(bool with_filter) {
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      e = expr(K::Unary, cur());
      e->name = cur().text;
      ++i_;
      e->args.push_back(nest([&] { return parse_unary(false); }));
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    if (with_filter) e = parse_filter_expr(std::move(e));
    return e;
  }

  ExprPtr parse_primary() {
    const Token& tok = cur();
    if (tok.type == T::Name) {
      ++i_;
      if (tok.text == "true" || tok.text == "True") return literal(tok, true);
      if (tok.text == "false" || tok.text == "False") return literal(tok, false);
      if (tok.text == "none" || tok.text == "None") return literal(tok, nullptr);
      auto e = expr(K::Name, tok);
      e->name = tok.text;
      return e;
    }
    if (tok.type == T::String) {
      std::string s;
      // Adjacent string literals concatenate, as in Python.
      while (cur().type == T::String) s += t_[i_++].text;
      return literal(tok, std::move(s));
    }
    if (tok.type == T::Int) {
      ++i_;
      int64_t v = 0;
      auto r = std::from_chars(tok.text.data(), tok.text.data() + tok.text.size(), v);
      if (r.ec != std::errc()) return literal(tok, std::stod(tok.text));
      return literal(tok, v);
    }
    if (tok.type == T::Float) {
      ++i_;
      return literal(tok, std::stod(tok.text));
    }
    if (is_op("(")) {
      ++i_;
      if (accept_op(")")) return expr(K::List, tok);
      ExprPtr e = parse_expr();
      if (is_op(",")) {
        auto l = expr(K::List, tok);
        l->args.push_back(std::move(e));
        while (accept_op(",")) {
          if (is_op(")")) break;
          l->args.push_back(parse_expr());
        }
        e = std::move(l);
      }
      expect_op(")");
      return e;
    }
    if (is_op("[")) {
      ++i_;
      auto l = expr(K::List, tok);
      while (!is_op("]")) {
        l->args.push_back(parse_expr());
        if (!accept_op(",")) break;
      }
      expect_op("]");
      return l;
    }
    if (is_op("{")) {
      ++i_;
      auto d = expr(K::Dict, tok);
      while (!is_op("}")) {
        d->args.push_back(parse_expr());
        expect_op(":");
        d->args.push_back(parse_expr());
        if (!accept_op(",")) break;
      }
      expect_op("}");
      return d;
    }
    error(tok, tok.type == T::VarEnd || tok.type == T::BlockEnd || tok.type == T::End
                   ? std::string("unexpected end of expression")
                   : fmt::format("unexpected '{}'", tok.text));
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      const Token& tok = cur();
      if (is_op(".")) {
        ++i_;
        const Token& n = cur();
        if (n.type == T::Int) {  // x.0 is x[0]
          ++i_;
          auto it = expr(K::Item, tok);
          it->args.push_back(std::move(e));
          it->args.push_back(literal(n, static_cast<int64_t>(std::stoll(n.text))));
          e = std::move(it);
          continue;
        }
        auto a = expr(K::Attr, tok);
        a->name = expect_name();
        a->args.push_back(std::move(e));
        e = std::move(a);
      } else if (is_op("[")) {
        ++i_;
        e = parse_subscript(std::move(e), tok);
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr target, const Token& at) {
    ExprPtr parts[3];
    int n = 0;
    bool slice = false;
    while (true) {
      if (is_op(":")) {
        slice = true;
        if (++n > 2) error(cur(), "too many ':' in slice");
        ++i_;
        continue;
      }
      if (is_op("]")) break;
      if (parts[n]) error(cur(), "expected ':' or ']'");
      parts[n] = parse_expr();
    }
    expect_op("]");
    auto e = expr(slice ? K::Slice : K::Item, at);
    e->args.push_back(std::move(target));
    if (!slice) {
      e->args.push_back(std::move(parts[0]));
    } else {
      for (auto& p : parts) e->args.push_back(std::move(p));
    }
    return e;
  }

  void parse_call_args(Expr& e) {
    expect_op("(");
    while (!is_op(")")) {
      if (cur().type == T::Name && peek(1).type == T::Op && peek(1).text == "=") {
        std::string k = cur().text;
        i_ += 2;
        e.kwargs.emplace_back(std::move(k), parse_expr());
      } else {
        if (!e.kwargs.empty()) error(cur(), "positional argument after keyword argument");
        e.args.push_back(parse_expr());
      }
      if (!accept_op(",")) break;
    }
    expect_op(")");
  }

  ExprPtr parse_call(ExprPtr callee) {
    auto e = expr(K::Call, cur());
    e->args.push_back(std::move(callee));
    parse_call_args(*e);
    return e;
  }

  ExprPtr parse_filter(ExprPtr input) {
    auto f = expr(K::Filter, cur());
    f->name = expect_name();
    while (accept_op(".")) f->name += "." + expect_name();
    if (!is_known_filter(f->name)) error(*f, fmt::format("no filter named '{}'", f->name));
    f->args.push_back(std::move(input));
    if (is_op("(")) parse_call_args(*f);
    return f;
  }

  ExprPtr parse_filter_expr(ExprPtr e) {
    while (true) {
      if (accept_op("|")) {
        e = parse_filter(std::move(e));
      } else if (is_name("is")) {
        auto t = expr(K::Test, cur());
        ++i_;
        t->negate = accept_name("not");
        t->name = expect_name();
        if (!is_known_test(t->name)) error(*t, fmt::format("no test named '{}'", t->name));
        t->args.push_back(std::move(e));
        const Token& n = cur();
        if (is_op("(")) {
          parse_call_args(*t);
        } else if ((n.type == T::Name || n.type == T::String || n.type == T::Int || n.type == T::Float ||
                    is_op("[") || is_op("{")) &&
                   !(n.type == T::Name &&
                     (n.text == "else" || n.text == "or" || n.text == "and" || n.text == "is" ||
                      n.text == "if" || n.text == "in" || n.text == "not"))) {
          t->args.push_back(parse_postfix(parse_primary()));
        }
        e = std::move(t);
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  // ---- helpers ----

  template <class F>
  ExprPtr nest(F f) {
    if (++depth_ > kMaxNesting) error(cur(), "expression nested too deeply");
    ExprPtr e = f();
    --depth_;
    return e;
  }

  template <class F>
  ExprPtr binary(std::string op, ExprPtr left, F right) {
    auto e = expr(K::Binary, cur());
    ++i_;
    e->name = std::move(op);
    e->args.push_back(std::move(left));
    e->args.push_back(nest(right));
    return e;
  }

  const Token& cur() const { return t_[i_]; }
  const Token& peek(size_t k) const { return t_[std::min(i_ + k, t_.size() - 1)]; }
  bool is_op(std::string_view op) const { return cur().type == T::Op && cur().text == op; }
  bool is_name(std::string_view n) const { return cur().type == T::Name && cur().text == n; }
  bool accept_op(std::string_view op) {
    if (!is_op(op)) return false;
    ++i_;
    return true;
  }
  bool accept_name(std::string_view n) {
    if (!is_name(n)) return false;
    ++i_;
    return true;
  }
  void expect_op(std::string_view op) {
    if (!accept_op(op)) error(cur(), fmt::format("expected '{}'", op));
  }
  std::string expect_name() {
    if (cur().type != T::Name) error(cur(), "expected a name");
    return t_[i_++].text;
  }
  void expect(T type, std::string_view what) {
    if (cur().type != type) error(cur(), fmt::format("expected {}", what));
    ++i_;
  }

  ExprPtr expr(K kind, const Token& at) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = at.line;
    e->col = at.col;
    return e;
  }
  ExprPtr literal(const Token& at, Value v) {
    auto e = expr(K::Literal, at);
    e->value = std::move(v);
    return e;
  }
  std::unique_ptr<Stmt> stmt(Stmt::Kind kind, const Token& at) {
    auto s = std::make_unique<Stmt>();
    s->kind = kind;
    s->line = at.line;
    s->col = at.col;
    return s;
  }

  [[noreturn]] void error(const Token& at, const std::string& what) const {
    fail("chat template syntax error at line {}, column {}: {}", at.line, at.col, what);
  }
  [[noreturn]] void error(const Expr& at, const std::string& what) const {
    fail("chat template syntax error at line {}, column {}: {}", at.line, at.col, what);
  }

  std::vector<Token> t_;
  size_t i_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;  // break/continue are legal only inside a for body
};

}  // namespace

Body parse(std::string_view source) {
  return Parser(lex(source)).run();
}

}  // namespace llmd::model::jinja
