#include "model/jinja_eval.hpp"

#include <algorithm>
#include <cmath>
#include <optional>

#include "model/jinja_builtins.hpp"

namespace llmd::model::jinja {
namespace {

using K = Expr::Kind;

// One level of variables. Jinja2 gives each for-loop body and macro call its own level, while
// if-blocks share their parent's: so `set` inside a loop does not leak out (hence namespace()).
struct Scope {
  const Scope* parent = nullptr;
  std::vector<std::pair<std::string, Value>> vars;

  const Value* find(std::string_view name) const {
    for (const Scope* s = this; s; s = s->parent)
      for (auto it = s->vars.rbegin(); it != s->vars.rend(); ++it)
        if (it->first == name) return &it->second;
    return nullptr;
  }
  void set(std::string_view name, Value v) {
    for (auto& [k, old] : vars)
      if (k == name) {
        old = std::move(v);
        return;
      }
    vars.emplace_back(std::string(name), std::move(v));
  }
};

enum class Flow { Normal, Break, Continue };

[[noreturn]] void undefined_error(const Value& v) {
  const auto& h = v.undefined_hint();
  fail("{}", h.empty() ? std::string("value is undefined") : fmt::format("'{}' is undefined", h));
}

int64_t floordiv(int64_t a, int64_t b) {
  if (b == 0) fail("integer division or modulo by zero");
  if (a == INT64_MIN && b == -1) fail("integer overflow");
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

class Interpreter {
 public:
  Interpreter(const RenderLimits& lim, const Scope& root) : lim_(lim), root_(root) {
    blim_.max_bytes = lim.max_output_bytes;
    blim_.max_items = lim.max_loop_iterations;
  }

  Flow exec(const Body& body, Scope& scope, std::string& out) {
    for (const auto& sp : body) {
      const Stmt& s = *sp;
      line_ = s.line;
      col_ = s.col;
      switch (s.kind) {
        case Stmt::Kind::Text:
          append(out, s.text);
          break;
        case Stmt::Kind::Output:
          append(out, to_str(eval(*s.expr, scope)));
          break;
        case Stmt::Kind::If: {
          size_t i = 0;
          for (; i < s.conds.size(); ++i)
            if (eval(*s.conds[i], scope).truthy()) break;
          if (i < s.bodies.size()) {
            const Flow f = exec(s.bodies[i], scope, out);
            if (f != Flow::Normal) return f;
          }
          break;
        }
        case Stmt::Kind::For:
          exec_for(s, scope, out);
          break;
        case Stmt::Kind::Set: {
          Value v = eval(*s.expr, scope);
          if (s.targets.size() == 2) {
            const Value* ns = scope.find(s.targets[0]);
            if (!ns || !ns->is_dict() || !ns->dict().is_namespace)
              fail("cannot assign attribute '{}' on a non-namespace object", s.targets[1]);
            ns->mutable_dict().set(s.targets[1], std::move(v));
          } else {
            scope.set(s.targets[0], std::move(v));
          }
          break;
        }
        case Stmt::Kind::SetBlock: {
          std::string text;
          exec(s.bodies[0], scope, text);
          scope.set(s.targets[0], std::move(text));
          break;
        }
        case Stmt::Kind::Macro: {
          auto c = std::make_shared<Callable>();
          c->name = s.targets[0];
          c->macro = &s;
          scope.set(s.targets[0], std::shared_ptr<const Callable>(std::move(c)));
          break;
        }
        case Stmt::Kind::FilterBlock: {
          std::string text;
          exec(s.bodies[0], scope, text);
          append(out, to_str(filter(*s.expr, Value(std::move(text)), scope)));
          break;
        }
        case Stmt::Kind::Scope: {
          const Flow f = exec(s.bodies[0], scope, out);
          if (f != Flow::Normal) return f;
          break;
        }
        case Stmt::Kind::Break:
          return Flow::Break;
        case Stmt::Kind::Continue:
          return Flow::Continue;
      }
    }
    return Flow::Normal;
  }

  int line_ = 0, col_ = 0;

 private:
  void append(std::string& out, std::string_view s) {
    if (out.size() + s.size() > lim_.max_output_bytes)
      fail("chat template output exceeds {} bytes", lim_.max_output_bytes);
    out += s;
  }

  void count_iteration() {
    if (++iterations_ > lim_.max_loop_iterations)
      fail("chat template exceeds {} loop iterations", lim_.max_loop_iterations);
  }

  List iterate(const Value& v) {
    if (v.is_list()) return v.list();
    if (v.is_undefined()) return {};
    if (v.is_dict() && !v.dict().is_namespace) {
      List out;
      for (const auto& [k, e] : v.dict().items) out.emplace_back(k);
      return out;
    }
    if (v.is_string()) {
      List out;
      for (auto cp : split_code_points(v.str())) out.emplace_back(std::string(cp));
      return out;
    }
    fail("'{}' object is not iterable", v.type_name());
  }

  void bind(Scope& scope, const std::vector<std::string>& targets, const Value& item) {
    if (targets.size() == 1) {
      scope.set(targets[0], item);
      return;
    }
    List parts = iterate(item);
    if (parts.size() != targets.size())
      fail("cannot unpack {} values into {} loop variables", parts.size(), targets.size());
    for (size_t i = 0; i < targets.size(); ++i) scope.set(targets[i], parts[i]);
  }

  void exec_for(const Stmt& s, Scope& scope, std::string& out) {
    List items = iterate(eval(*s.expr, scope));
    if (s.cond) {
      List kept;
      for (auto& item : items) {
        count_iteration();
        Scope fs{&scope, {}};
        bind(fs, s.targets, item);
        if (eval(*s.cond, fs).truthy()) kept.push_back(std::move(item));
      }
      items = std::move(kept);
    }
    // loop.cycle reads the current index through this shared cell.
    auto index = std::make_shared<int64_t>(0);
    auto cycle = std::make_shared<Callable>();
    cycle->name = "cycle";
    cycle->fn = [index](const CallArgs& a) -> Value {
      if (a.pos.empty()) fail("loop.cycle: no items");
      return a.pos[static_cast<size_t>(*index) % a.pos.size()];
    };
    const Value cycle_v(std::shared_ptr<const Callable>(std::move(cycle)));
    const int64_t n = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < n; ++i) {
      count_iteration();
      *index = i;
      Scope body{&scope, {}};
      auto loop = make_dict();
      loop->items = {
          {"index", i + 1},
          {"index0", i},
          {"revindex", n - i},
          {"revindex0", n - i - 1},
          {"first", i == 0},
          {"last", i == n - 1},
          {"length", n},
          {"previtem", i > 0 ? items[i - 1] : Value(Undefined{"previtem"})},
          {"nextitem", i + 1 < n ? items[i + 1] : Value(Undefined{"nextitem"})},
          {"depth", 1},
          {"depth0", 0},
          {"cycle", cycle_v},
      };
      body.set("loop", Value(std::move(loop)));
      bind(body, s.targets, items[i]);
      if (exec(s.bodies[0], body, out) == Flow::Break) break;
    }
    if (n == 0 && s.bodies.size() > 1) {
      Scope body{&scope, {}};
      exec(s.bodies[1], body, out);
    }
  }

  void step() {
    if (++steps_ > lim_.max_steps) fail("chat template exceeds {} evaluation steps", lim_.max_steps);
  }

  CallArgs eval_args(const Expr& e, size_t first, const Scope& scope) {
    CallArgs a;
    for (size_t i = first; i < e.args.size(); ++i) a.pos.push_back(eval(*e.args[i], scope));
    for (const auto& [k, v] : e.kwargs) a.kw.emplace_back(k, eval(*v, scope));
    return a;
  }

  Value filter(const Expr& e, const Value& in, const Scope& scope) {
    CallArgs a = eval_args(e, 1, scope);
    line_ = e.line;
    col_ = e.col;
    return apply_filter(e.name, in, a, blim_);
  }

  Value get_attr(const Value& obj, const std::string& name) {
    if (obj.is_undefined()) undefined_error(obj);
    if (obj.is_dict()) {
      const Value* v = obj.dict().find(name);
      return v ? *v : Value(Undefined{name});
    }
    return Undefined{name};
  }

  Value get_item(const Value& obj, const Value& key) {
    if (obj.is_undefined()) undefined_error(obj);
    if (obj.is_dict()) {
      if (!key.is_string()) return Undefined{to_str(key)};
      const Value* v = obj.dict().find(key.str());
      return v ? *v : Value(Undefined{key.str()});
    }
    if ((obj.is_list() || obj.is_string()) && (key.is_int() || key.is_bool())) {
      int64_t i = key.as_int();
      if (obj.is_list()) {
        const auto& l = obj.list();
        if (i < 0) i += static_cast<int64_t>(l.size());
        if (i < 0 || i >= static_cast<int64_t>(l.size())) return Undefined{"list index out of range"};
        return l[static_cast<size_t>(i)];
      }
      const auto cps = split_code_points(obj.str());
      if (i < 0) i += static_cast<int64_t>(cps.size());
      if (i < 0 || i >= static_cast<int64_t>(cps.size())) return Undefined{"string index out of range"};
      return std::string(cps[static_cast<size_t>(i)]);
    }
    if (key.is_string()) return Undefined{key.str()};
    return Undefined{};
  }

  Value slice(const Value& obj, const Value& start, const Value& stop, const Value& stepv) {
    if (obj.is_undefined()) undefined_error(obj);
    auto opt = [](const Value& v, std::string_view what) -> std::optional<int64_t> {
      if (v.is_none() || v.is_undefined()) return std::nullopt;
      if (!v.is_int() && !v.is_bool()) fail("slice {} must be an integer", what);
      return v.as_int();
    };
    const int64_t st = opt(stepv, "step").value_or(1);
    if (st == 0) fail("slice step cannot be zero");
    std::vector<std::string_view> cps;
    int64_t len;
    if (obj.is_list()) {
      len = static_cast<int64_t>(obj.list().size());
    } else if (obj.is_string()) {
      cps = split_code_points(obj.str());
      len = static_cast<int64_t>(cps.size());
    } else {
      fail("'{}' object is not subscriptable", obj.type_name());
    }
    // Python's slice.indices().
    auto norm = [&](std::optional<int64_t> v, int64_t dflt) {
      if (!v) return dflt;
      int64_t x = *v;
      if (x < 0) x += len;
      if (st > 0) return std::clamp<int64_t>(x, 0, len);
      return std::clamp<int64_t>(x, -1, len - 1);
    };
    const int64_t b = norm(opt(start, "start"), st > 0 ? 0 : len - 1);
    const int64_t e = norm(opt(stop, "stop"), st > 0 ? len : -1);
    List out;
    std::string s;
    for (int64_t i = b; st > 0 ? i < e : i > e; i += st) {
      if (obj.is_list())
        out.push_back(obj.list()[static_cast<size_t>(i)]);
      else
        s += cps[static_cast<size_t>(i)];
    }
    if (obj.is_list()) return out;
    return s;
  }

  Value call(const Callable& c, const CallArgs& a) {
    if (!c.macro) return c.fn(a);
    const Stmt& m = *c.macro;
    if (depth_ >= lim_.max_call_depth)
      fail("chat template exceeds {} nested macro calls", lim_.max_call_depth);
    const size_t nparams = m.targets.size() - 1;
    if (a.pos.size() > nparams) fail("macro '{}' takes not more than {} argument(s)", m.targets[0], nparams);
    Scope scope{&root_, {}};
    for (size_t i = 0; i < nparams; ++i) {
      const std::string& p = m.targets[i + 1];
      const Value* v = a.get(i, p);
      if (v)
        scope.set(p, *v);
      else if (m.conds[i])
        scope.set(p, eval(*m.conds[i], scope));
      else
        scope.set(p, Undefined{p});
    }
    for (const auto& [k, v] : a.kw)
      if (std::find(m.targets.begin() + 1, m.targets.end(), k) == m.targets.end())
        fail("macro '{}' has no parameter '{}'", m.targets[0], k);
    ++depth_;
    std::string out;
    exec(m.bodies[0], scope, out);
    --depth_;
    return out;
  }

  Value eval(const Expr& e, const Scope& scope) {
    step();
    switch (e.kind) {
      case K::Literal:
        return e.value;
      case K::Name: {
        const Value* v = scope.find(e.name);
        return v ? *v : Value(Undefined{e.name});
      }
      case K::List: {
        List l;
        for (const auto& a : e.args) l.push_back(eval(*a, scope));
        return l;
      }
      case K::Dict: {
        auto d = make_dict();
        for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
          Value k = eval(*e.args[i], scope);
          d->set(k.is_string() ? k.str() : to_str(k), eval(*e.args[i + 1], scope));
        }
        return d;
      }
      case K::Attr:
        return get_attr(eval(*e.args[0], scope), e.name);
      case K::Item:
        return get_item(eval(*e.args[0], scope), eval(*e.args[1], scope));
      case K::Slice: {
        auto opt = [&](const ExprPtr& p) { return p ? eval(*p, scope) : Value(nullptr); };
        return slice(eval(*e.args[0], scope), opt(e.args[1]), opt(e.args[2]), opt(e.args[3]));
      }
      case K::Call: {
        const Expr& callee = *e.args[0];
        if (callee.kind == K::Attr) {
          const Value obj = eval(*callee.args[0], scope);
          if (obj.is_undefined()) undefined_error(obj);
          CallArgs a = eval_args(e, 1, scope);
          line_ = e.line;
          col_ = e.col;
          bool found = false;
          Value r = call_method(obj, callee.name, a, blim_, found);
          if (found) return r;
          const Value f = get_attr(obj, callee.name);
          if (!f.is_callable()) fail("'{}' object has no method '{}'", obj.type_name(), callee.name);
          return call(f.callable(), a);
        }
        const Value f = eval(callee, scope);
        CallArgs a = eval_args(e, 1, scope);
        line_ = e.line;
        col_ = e.col;
        if (f.is_undefined()) undefined_error(f);
        if (!f.is_callable()) fail("'{}' object is not callable", f.type_name());
        return call(f.callable(), a);
      }
      case K::Filter:
        return filter(e, eval(*e.args[0], scope), scope);
      case K::Test: {
        const Value v = eval(*e.args[0], scope);
        CallArgs a = eval_args(e, 1, scope);
        return apply_test(e.name, v, a) != e.negate;
      }
      case K::Unary: {
        const Value v = eval(*e.args[0], scope);
        if (e.name == "not") return !v.truthy();
        if (v.is_undefined()) undefined_error(v);
        if (!v.is_number()) fail("bad operand type for unary {}: '{}'", e.name, v.type_name());
        if (e.name == "+") return v.is_float() ? Value(v.as_double()) : Value(v.as_int());
        if (v.is_float()) return -v.as_double();
        if (v.as_int() == INT64_MIN) fail("integer overflow");
        return -v.as_int();
      }
      case K::Binary: {
        if (e.name == "and" || e.name == "or") {
          Value l = eval(*e.args[0], scope);
          if (l.truthy() == (e.name == "or")) return l;
          return eval(*e.args[1], scope);
        }
        const Value l = eval(*e.args[0], scope);
        const Value r = eval(*e.args[1], scope);
        return binary(e.name, l, r);
      }
      case K::Compare: {
        Value l = eval(*e.args[0], scope);
        for (size_t i = 0; i < e.ops.size(); ++i) {
          Value r = eval(*e.args[i + 1], scope);
          const std::string& op = e.ops[i];
          bool ok;
          if (op == "==")
            ok = equals(l, r);
          else if (op == "!=")
            ok = !equals(l, r);
          else if (op == "<")
            ok = less(l, r);
          else if (op == ">")
            ok = less(r, l);
          else if (op == "<=")
            ok = !less(r, l);
          else if (op == ">=")
            ok = !less(l, r);
          else if (op == "in")
            ok = contains(r, l);
          else
            ok = !contains(r, l);
          if (!ok) return false;
          l = std::move(r);
        }
        return true;
      }
      case K::Cond: {
        if (eval(*e.args[0], scope).truthy()) return eval(*e.args[1], scope);
        return e.args[2] ? eval(*e.args[2], scope) : Value(Undefined{});
      }
    }
    return Undefined{};
  }

  Value binary(const std::string& op, const Value& l, const Value& r) {
    if (op == "~") {
      std::string s = to_str(l);
      s += to_str(r);
      check_bytes(s.size());
      return s;
    }
    if (l.is_undefined()) undefined_error(l);
    if (r.is_undefined()) undefined_error(r);
    const bool nums = l.is_number() && r.is_number();
    const bool ints = nums && !l.is_float() && !r.is_float();
    if (op == "+") {
      if (ints) {
        int64_t v;
        if (__builtin_add_overflow(l.as_int(), r.as_int(), &v)) fail("integer overflow");
        return v;
      }
      if (nums) return l.as_double() + r.as_double();
      if (l.is_string() && r.is_string()) {
        check_bytes(l.str().size() + r.str().size());
        return l.str() + r.str();
      }
      if (l.is_list() && r.is_list()) {
        check_items(l.list().size() + r.list().size());
        List out = l.list();
        out.insert(out.end(), r.list().begin(), r.list().end());
        return out;
      }
    } else if (op == "-") {
      if (ints) {
        int64_t v;
        if (__builtin_sub_overflow(l.as_int(), r.as_int(), &v)) fail("integer overflow");
        return v;
      }
      if (nums) return l.as_double() - r.as_double();
    } else if (op == "*") {
      if (ints) {
        int64_t v;
        if (__builtin_mul_overflow(l.as_int(), r.as_int(), &v)) fail("integer overflow");
        return v;
      }
      if (nums) return l.as_double() * r.as_double();
      const Value* seq = l.is_string() || l.is_list() ? &l : r.is_string() || r.is_list() ? &r : nullptr;
      const Value* cnt = seq == &l ? &r : &l;
      if (seq && (cnt->is_int() || cnt->is_bool())) {
        const int64_t n = std::max<int64_t>(0, cnt->as_int());
        if (seq->is_string()) {
          const size_t unit = seq->str().size();
          if (unit && static_cast<uint64_t>(n) > lim_.max_output_bytes / unit)
            check_bytes(lim_.max_output_bytes + 1);
          std::string out;
          for (int64_t i = 0; i < n; ++i) out += seq->str();
          return out;
        }
        const size_t unit = seq->list().size();
        if (unit && static_cast<uint64_t>(n) > lim_.max_loop_iterations / unit)
          check_items(lim_.max_loop_iterations + 1);
        List out;
        for (int64_t i = 0; i < n; ++i) out.insert(out.end(), seq->list().begin(), seq->list().end());
        return out;
      }
    } else if (op == "/") {
      if (nums) {
        if (r.as_double() == 0.0) fail("division by zero");
        return l.as_double() / r.as_double();
      }
    } else if (op == "//") {
      if (ints) return floordiv(l.as_int(), r.as_int());
      if (nums) {
        if (r.as_double() == 0.0) fail("float floor division by zero");
        return std::floor(l.as_double() / r.as_double());
      }
    } else if (op == "%") {
      if (ints) {
        const int64_t a = l.as_int(), b = r.as_int();
        return a - floordiv(a, b) * b;
      }
      if (nums) {
        const double a = l.as_double(), b = r.as_double();
        if (b == 0.0) fail("float modulo by zero");
        return a - std::floor(a / b) * b;
      }
    } else if (op == "**") {
      if (ints && r.as_int() >= 0) {
        int64_t base = l.as_int(), exp = r.as_int(), acc = 1;
        while (exp > 0) {
          if ((exp & 1) && __builtin_mul_overflow(acc, base, &acc)) fail("integer overflow");
          exp >>= 1;
          if (exp && __builtin_mul_overflow(base, base, &base)) fail("integer overflow");
        }
        return acc;
      }
      if (nums) return std::pow(l.as_double(), r.as_double());
    }
    fail("unsupported operand type(s) for {}: '{}' and '{}'", op, l.type_name(), r.type_name());
  }

  void check_bytes(size_t n) const {
    if (n > lim_.max_output_bytes) fail("chat template output exceeds {} bytes", lim_.max_output_bytes);
  }
  void check_items(size_t n) const {
    if (n > lim_.max_loop_iterations) fail("chat template list exceeds {} items", lim_.max_loop_iterations);
  }

  const RenderLimits& lim_;
  BuiltinLimits blim_;
  const Scope& root_;
  size_t iterations_ = 0;
  size_t steps_ = 0;
  int depth_ = 0;
};

std::shared_ptr<const Callable> builtin(std::string name, std::function<Value(const CallArgs&)> fn) {
  auto c = std::make_shared<Callable>();
  c->name = std::move(name);
  c->fn = std::move(fn);
  return c;
}

}  // namespace

std::string render(const Body& body, const std::vector<std::pair<std::string, Value>>& globals,
                   const RenderLimits& limits) {
  Scope builtins;
  const size_t max_items = limits.max_loop_iterations;
  builtins.set("range", builtin("range", [max_items](const CallArgs& a) -> Value {
                 auto arg = [&](size_t i) {
                   if (!a.pos[i].is_int() && !a.pos[i].is_bool()) fail("range: expected integers");
                   return a.pos[i].as_int();
                 };
                 int64_t start = 0, stop = 0, step = 1;
                 if (a.pos.size() == 1) {
                   stop = arg(0);
                 } else if (a.pos.size() == 2 || a.pos.size() == 3) {
                   start = arg(0);
                   stop = arg(1);
                   if (a.pos.size() == 3) step = arg(2);
                 } else {
                   fail("range expected 1 to 3 arguments");
                 }
                 if (step == 0) fail("range() arg 3 must not be zero");
                 List out;
                 for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
                   if (out.size() >= max_items) fail("range() exceeds {} items", max_items);
                   out.emplace_back(i);
                 }
                 return out;
               }));
  auto make_ns = [](bool ns) {
    return [ns](const CallArgs& a) -> Value {
      auto d = make_dict();
      d->is_namespace = ns;
      for (const auto& p : a.pos) {
        if (!p.is_dict()) fail("namespace()/dict() positional argument must be a mapping");
        for (const auto& [k, v] : p.dict().items) d->set(k, v);
      }
      for (const auto& [k, v] : a.kw) d->set(k, v);
      return d;
    };
  };
  builtins.set("namespace", builtin("namespace", make_ns(true)));
  builtins.set("dict", builtin("dict", make_ns(false)));
  Scope root{&builtins, globals};
  // Macros see the template's top-level variables, as Jinja2's do.
  Scope top{&root, {}};
  Interpreter in(limits, top);
  std::string out;
  try {
    in.exec(body, top, out);
  } catch (const TemplateRaised&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(fmt::format("chat template error at line {}, column {}: {}", in.line_, in.col_, e.what()));
  }
  return out;
}

}  // namespace llmd::model::jinja
