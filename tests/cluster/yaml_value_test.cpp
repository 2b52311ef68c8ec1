// The emitter behind every rendered manifest: stable layout, and strings that read back as the
// same strings (not numbers or booleans) in a YAML reader.
#include <gtest/gtest.h>

#include <yaml-cpp/yaml.h>

#include "cluster/yaml_value.hpp"
#include "common/error.hpp"

namespace llmd::cluster::yaml {
namespace {

TEST(YamlEmit, KubectlLayout) {
  const Value v =
      Value::map({{"a", 1},
                  {"b", Value::map({{"c", "x"}, {"d", true}})},
                  {"l", Value::list({"p", Value::map({{"name", "q"}, {"m", Value::list({"r"})}})})},
                  {"e", Value::list()},
                  {"f", Value::map()},
                  {"g", Value()}});
  EXPECT_EQ(emit(v), R"(a: 1
b:
  c: x
  d: true
l:
- p
- name: q
  m:
  - r
e: []
f: {}
g: null
)");
}

TEST(YamlEmit, QuotesWhatWouldReadAsAnotherType) {
  for (const char* s :
       {"8000", "0.0.0.0", "1Gi",  "yes",  "No", "on",        "OFF",        "y",          "null",
        "~",    "true",    "-1",   ".5",   "+3", "0777",      "0x1F",       "2001-12-14", "",
        " x",   "x ",      "a: b", "a #b", "x:", "- x",       "-",          "*x",         "&x",
        "!x",   "%x",      "@x",   "`x",   "'x", "\"x",       "{x",         "[x",         "|x",
        ">x",   "#x",      "?x",   ":x",   ",x", "tab\there", "caf\xc3\xa9"}) {
    SCOPED_TRACE(s);
    const std::string out = emit(Value::map({{"k", s}}));
    EXPECT_EQ(out[3], '"') << out;
    const YAML::Node back = YAML::Load(out);
    EXPECT_EQ(back["k"].Scalar(), s);
    EXPECT_EQ(back["k"].Tag(), "!");  // read as a quoted (string) scalar
  }
  for (const char* s :
       {"--model", "llmd", "$(POD_IP)", "/models/m.gguf", "nvidia.com/gpu",
        "demo-prefill:8000;role=prefill,x:1", "tcp://0.0.0.0:5557", "kubernetes.io/h2c", "a b", "Equal"}) {
    SCOPED_TRACE(s);
    EXPECT_EQ(emit(Value::map({{"k", s}})), std::string("k: ") + s + "\n");
  }
}

TEST(YamlEmit, MultiLineTextAsLiteralBlock) {
  EXPECT_EQ(emit(Value::map({{"d", Value::map({{"f", "a: 1\nb:\n\n  - c\n"}})}})),
            "d:\n  f: |\n    a: 1\n    b:\n\n      - c\n");
  EXPECT_EQ(emit(Value::map({{"f", "x\ny"}})), "f: |-\n  x\n  y\n");
  EXPECT_EQ(emit(Value::map({{"f", "x\n\n"}})), "f: |+\n  x\n\n");
  EXPECT_EQ(emit(Value::list({"x\ny\n"})), "- |\n  x\n  y\n");
  // A first line that starts with a space, a line of spaces, or a carriage return: double quotes.
  EXPECT_EQ(emit(Value::map({{"f", " x\ny\n"}})), "f: \" x\\ny\\n\"\n");
  EXPECT_EQ(emit(Value::map({{"f", "x\n  \ny\n"}})), "f: \"x\\n  \\ny\\n\"\n");
  EXPECT_EQ(emit(Value::map({{"f", "x\r\ny\n"}})), "f: \"x\\r\\ny\\n\"\n");
  for (const char* s : {"a: 1\nb:\n\n  - c\n", "x\ny", "x\n\n", " x\ny\n", "x\n  \ny\n", "x\r\ny\n"}) {
    SCOPED_TRACE(s);
    EXPECT_EQ(YAML::Load(emit(Value::map({{"f", s}})))["f"].Scalar(), s);
  }
}

TEST(YamlEmit, PlainScalarsKeepTheirType) {
  EXPECT_EQ(
      emit(Value::map({{"a", Value::plain("2")}, {"b", Value::plain("true")}, {"c", Value::plain("a: b")}})),
      "a: 2\nb: true\nc: \"a: b\"\n");
}

TEST(YamlEmit, KeysAreUniqueAndQuotedWhenNeeded) {
  Value m = Value::map({{"a", 1}});
  EXPECT_THROW(m.set("a", 2), Error);
  EXPECT_EQ(emit(Value::map({{"8000", 1}, {"yes", 2}})), "\"8000\": 1\n\"yes\": 2\n");
}

}  // namespace
}  // namespace llmd::cluster::yaml
