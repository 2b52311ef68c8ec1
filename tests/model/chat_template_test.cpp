#include "model/chat_template.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "common/error.hpp"

namespace llmd::model {
namespace {

using nlohmann::ordered_json;
using ::testing::HasSubstr;

const std::string kTemplates = std::string(LLMD_SHARED_DIR) + "/chat-templates";

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// expected.json was rendered with strftime_now fixed at 2026-11-25 (local time, any hour).
int64_t fixed_now() {
  std::tm tm{};
  tm.tm_year = 2026 - 1900;
  tm.tm_mon = 10;
  tm.tm_mday = 25;
  tm.tm_hour = 12;
  tm.tm_isdst = -1;
  return static_cast<int64_t>(std::mktime(&tm));
}

ChatTemplateOptions opts(std::string bos = "<s>", std::string eos = "</s>") {
  ChatTemplateOptions o;
  o.bos_token = std::move(bos);
  o.eos_token = std::move(eos);
  o.now = fixed_now();
  return o;
}

// Renders a bare template with `vars` (an object, key order kept) as its variables.
std::string run(const std::string& src, const std::string& vars = "{}", ChatTemplateOptions o = opts()) {
  return ChatTemplate::from_source(src, std::move(o))
      .render(ordered_json::array(), false, ordered_json::parse(vars));
}

const ordered_json& two_turns() {
  static const ordered_json m = ordered_json::parse(R"([
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "How are you?"}])");
  return m;
}

TEST(ChatTemplateExpected, EveryCaseRendersByteIdentical) {
  const auto doc = ordered_json::parse(read_file(kTemplates + "/expected.json"));
  int checked = 0;
  for (const auto& c : doc["cases"]) {
    const std::string name = c["template"].get<std::string>();
    SCOPED_TRACE(name + " " + c["messages"].dump());
    const auto t =
        ChatTemplate::from_source(read_file(kTemplates + "/" + name),
                                  opts(c["bos_token"].get<std::string>(), c["eos_token"].get<std::string>()));
    const bool gen = c["add_generation_prompt"].get<bool>();
    if (c.contains("rendered")) {
      EXPECT_EQ(t.render(c["messages"], gen), c["rendered"].get<std::string>());
    } else {
      try {
        t.render(c["messages"], gen);
        ADD_FAILURE() << "expected error " << c["error"];
      } catch (const Error& e) {
        EXPECT_EQ(std::string(e.what()), c["error"].get<std::string>());
      }
    }
    ++checked;
  }
  EXPECT_EQ(checked, 40);
}

// Templates without reference renders still load and render a plain conversation.
TEST(ChatTemplateExpected, EveryTemplateInTheFolderRenders) {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(kTemplates)) {
    if (e.path().extension() != ".jinja") continue;
    SCOPED_TRACE(e.path().filename().string());
    const auto t = ChatTemplate::from_source(read_file(e.path()), opts());
    ordered_json m =
        ordered_json::parse(R"([{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello"},
                                            {"role":"user","content":"Bye"}])");
    const std::string out = t.render(m, true);
    EXPECT_THAT(out, HasSubstr("Bye"));
    ++n;
  }
  EXPECT_GE(n, 15);
}

struct Snippet {
  const char* name;
  const char* source;
  const char* vars;
  const char* expected;
};

// Rendered by Jinja2 3.1.6 with transformers' environment (see README beside expected.json).
const Snippet kSnippets[] =
    {
        {"ws_trim", R"J({% if true %}
  a
{% endif %}
  {% if true %}b{% endif %}
)J",
         R"J({})J", R"J(  a
b)J"},
        {"ws_minus", R"J(x  {%- if true -%}  y  {%- endif -%}  z {{- ' w ' -}} v
)J",
         R"J({})J", R"J(xyz w v)J"},
        {"ws_plus", R"J(a
  {%+ if true +%}
b{% endif %})J",
         R"J({})J", R"J(a
  
b)J"},
        {"ws_comment", R"J(a
  {# c #}
b {#- c -#} c)J",
         R"J({})J", R"J(a
bc)J"},
        {"ws_var_no_trim", R"J({{ 'a' }}
{{ 'b' }}
)J",
         R"J({})J", R"J(a
b)J"},
        {"loop_vars",
         R"J({% for x in ['a','b','c'] %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.revindex }}{{ loop.cycle('o','e') }}|{% endfor %})J",
         R"J({})J", R"J(10TrueFalse33o|21FalseFalse32e|32FalseTrue31o|)J"},
        {"loop_else", R"J({% for x in [] %}x{% else %}empty{% endfor %})J", R"J({})J", R"J(empty)J"},
        {"loop_filter",
         R"J({% for x in range(10) if x is odd %}{{ x }}{% if loop.last %}.{% endif %}{% endfor %})J",
         R"J({})J", R"J(13579.)J"},
        {"loop_break",
         R"J({% for x in range(10) %}{% if x == 3 %}{% break %}{% endif %}{% if x == 1 %}{% continue %}{% endif %}{{ x }}{% endfor %})J",
         R"J({})J", R"J(02)J"},
        {"loop_scope",
         R"J({% set a = 1 %}{% for x in [1] %}{% set a = 2 %}{% endfor %}{{ a }}{% set ns = namespace(a=1) %}{% for x in [1,2] %}{% set ns.a = ns.a + x %}{% endfor %}{{ ns.a }})J",
         R"J({})J", R"J(14)J"},
        {"unpack",
         R"J({% for k, v in {'b': 1, 'a': [1, 'x', none, true, 1.5]}.items() %}{{ k }}={{ v }};{% endfor %})J",
         R"J({})J", R"J(b=1;a=[1, 'x', None, True, 1.5];)J"},
        {"slices",
         R"J({{ [1,2,3,4][::-1] }}{{ [1,2,3,4][1:] }}{{ 'hello'[1:3] }}{{ 'hello'[::-1] }}{{ [1,2,3,4][-2:] }}{{ 'abc'[-1] }}{{ [1,2,3,4,5][::2] }}{{ 'héllo'[1:3] }})J",
         R"J({})J", R"J([4, 3, 2, 1][2, 3, 4]elolleh[3, 4]c[1, 3, 5]él)J"},
        {"strings",
         R"J({{ '  a b  '.strip() }}|{{ 'xxaxx'.strip('x') }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a b c'.split(' ', 1) }}|{{ 'Hello World'.lower() }}{{ 'hi'.upper() }}|{{ 'hello world'.title() }}|{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith(('x','c')) }}|{{ 'a-b'.replace('-', '+') }}|{{ 'a</think>b</think>c'.split('</think>')[-1] }}|{{ '\n\nx\n'.lstrip('\n') }}|{{ 'x\n\n'.rstrip('\n') }}|{{ 'a b c'.rsplit(' ', 1) }})J",
         R"J({})J",
         R"J(a b|a|['a', 'b', '', 'c']|['a', 'b']|['a', 'b c']|hello worldHI|Hello World|TrueTrue|a+b|c|x
|x|['a b', 'c'])J"},
        {"escapes", R"J({{ 'a\tb\\c\'d"e\u00e9\x41' }}|{{ "q'" }}|{{ 'unknown \d esc' }})J", R"J({})J",
         R"J(a	b\c'd"eéA|q'|unknown \d esc)J"},
        {"filters1",
         R"J({{ '  x  ' | trim }}|{{ [1,2,3] | length }}|{{ 'héllo' | length }}|{{ 5 | string + 'a' }}|{{ 'AbC' | lower }}{{ 'abc' | upper }}|{{ [3,1,2] | first }}{{ [3,1,2] | last }}|{{ ['a','b'] | join(', ') }}|{{ undefined_var | default('dflt') }}|{{ '' | default('e', true) }}|{{ [1,2,3] | sum }}|{{ [3,1,2] | sort }}|{{ [1,2,2,3] | unique | list }}|{{ [1,2] | reverse | list }}|{{ 'hello world' | title }}|{{ 'hello' | capitalize }}|{{ -3 | abs }}|{{ '12' | int + 1 }}|{{ 2.5 | round }}|{{ [3,1,2] | max }}{{ [3,1,2] | min }})J",
         R"J({})J",
         R"J(x|3|5|5a|abcABC|32|a, b|dflt|e|6|[1, 2, 3]|[1, 2, 3]|[2, 1]|Hello World|Hello|3|13|2.0|31)J"},
        {"filters2",
         R"J({{ msgs | selectattr('role', 'equalto', 'user') | map(attribute='content') | join('/') }}|{{ msgs | rejectattr('role', 'equalto', 'user') | list | length }}|{{ msgs | map(attribute='role') | list }}|{{ [1,2,3,4] | select('even') | list }}|{{ ['a','code_interpreter','b'] | reject('equalto', 'code_interpreter') | join(', ') }}|{{ {'b':1,'a':2} | items | map('join', '=') | join(',') }}|{{ {'b':1,'a':2} | dictsort | map('join', '=') | join(',') }}|{{ msgs | selectattr('x') | list }}|{{ 'a\nb' | indent(2) }}|{{ 'a\nb' | indent(2, true) }}|{{ ['x','y'] | map('upper') | list }})J",
         R"J({"msgs": [{"role": "user", "content": "u1"}, {"role": "assistant", "content": "a1"}, {"role": "user", "content": "u2", "x": 1}]})J",
         R"J(u1/u2|1|['user', 'assistant', 'user']|[2, 4]|a, b|b=1,a=2|a=2,b=1|[{'role': 'user', 'content': 'u2', 'x': 1}]|a
  b|  a
  b|['X', 'Y'])J"},
        {"tojson",
         R"J({{ d | tojson }}|{{ d | tojson(indent=2) }}|{{ [] | tojson(indent=4) }}|{{ {} | tojson }}|{{ d | tojson(sort_keys=true) }}|{{ 'é"\n' | tojson }}|{{ 'é' | tojson(ensure_ascii=true) }}|{{ [1.0, 0.1, 1e20, 1e-7, -0.0, 3] | tojson }}|{{ d | tojson(separators=(',', ':')) }})J",
         R"J({"d": {"z": 1, "a": [1, 2, {"k": null}], "m": true, "s": "x"}})J",
         R"J({"z": 1, "a": [1, 2, {"k": null}], "m": true, "s": "x"}|{
  "z": 1,
  "a": [
    1,
    2,
    {
      "k": null
    }
  ],
  "m": true,
  "s": "x"
}|[]|{}|{"a": [1, 2, {"k": null}], "m": true, "s": "x", "z": 1}|"é\"\n"|"\u00e9"|[1.0, 0.1, 1e+20, 1e-07, -0.0, 3]|{"z":1,"a":[1,2,{"k":null}],"m":true,"s":"x"})J"},
        {"tests",
         R"J({{ x is defined }}{{ y is defined }}{{ y is undefined }}{{ n is none }}{{ s is string }}{{ d is mapping }}{{ l is iterable }}{{ s is iterable }}{{ d is iterable }}{{ l is sequence }}{{ 1 is number }}{{ 1.5 is number }}{{ s is number }}{{ t is true }}{{ t is false }}{{ 1 is true }}{{ 3 is odd }}{{ 4 is even }}{{ 9 is divisibleby 3 }}{{ 'a' is in 'abc' }}{{ s is not string }}{{ y is iterable }}{{ 1 is integer }}{{ 1.0 is float }}{{ 'x' is eq 'x' }}{{ 1 is boolean }}{{ t is boolean }})J",
         R"J({"x": 1, "n": null, "s": "str", "d": {}, "l": [1], "t": true})J",
         R"J(TrueFalseTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueFalseTrueFalseFalseTrueTrueTrueTrueFalseTrueTrueTrueTrueFalseTrue)J"},
        {"ops",
         R"J({{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 'a' ~ 1 ~ none }} {{ 'ab' * 3 }} {{ [1] + [2] }} {{ 1 == 1.0 }} {{ 'a' < 'b' }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 5 }} {{ 'b' in 'abc' }} {{ 2 not in [1, 3] }} {{ 'k' in {'k': 1} }} {{ not false }} {{ none or 'x' }} {{ 0 and 1 }} {{ 'y' if false else 'n' }} {{ 'y' if true }}{{ 'z' if false }}| {{ 1.5 + 1 }} {{ 10 / 4 }} {{ 1e3 }} {{ -2 ** 2 }} {{ 3 - -1 }})J",
         R"J({})J",
         R"J(3 -4 1 2 3.5 1024 7 9 a1None ababab [1, 2] True True True False True True True True x 0 n y| 2.5 2.5 1000.0 4 4)J"},
        {"none_render",
         R"J({{ none }}|{{ true }}|{{ [none, true, 'a', 1.5, {'k': 'v'}] }}|{{ undefined_thing }}|{{ {'a': "it's"} }})J",
         R"J({})J", R"J(None|True|[None, True, 'a', 1.5, {'k': 'v'}]||{'a': "it's"})J"},
        {"dict_access",
         R"J({{ d.a }}{{ d['b'] }}{{ d.get('c', 'dflt') }}{{ d.get('zz') }}{{ d.keys() | list }}{{ d.values() | list }}{{ d.missing is defined }}{{ l[5] is defined }}{{ l.0 }})J",
         R"J({"d": {"a": 1, "b": 2, "c": 3}, "l": [7]})J", R"J(123None['a', 'b', 'c'][1, 2, 3]FalseFalse7)J"},
        {"macro",
         R"J({% macro greet(name, punct='!') -%}Hello {{ name }}{{ punct }}{%- endmacro %}{{ greet('a') }} {{ greet('b', '?') }} {{ greet(name='c', punct='.') }}{% macro rec(n) %}{% if n > 0 %}{{ n }}{{ rec(n - 1) }}{% endif %}{% endmacro %} {{ rec(3) }})J",
         R"J({})J", R"J(Hello a! Hello b? Hello c. 321)J"},
        {"set_block",
         R"J({% set x %}inner {{ 1 + 1 }}{% endset %}[{{ x }}]{% filter upper %}up {{ 'x' }}{% endfilter %})J",
         R"J({})J", R"J([inner 2]UP X)J"},
        {"raw", R"J({% raw %}{{ not evaluated }}{% endraw %})J", R"J({})J", R"J({{ not evaluated }})J"},
        {"strftime",
         R"J({{ strftime_now('%Y-%m-%d') }} {{ strftime_now('%d %b %Y') }} {{ strftime_now('%B %d, %Y') }})J",
         R"J({})J", R"J(2026-11-25 25 Nov 2026 November 25, 2026)J"},
        {"namespace_init",
         R"J({% set ns = namespace() %}{% set ns.x = 5 %}{{ ns.x }}{% set ns2 = namespace(a=1, b='x') %}{{ ns2.a }}{{ ns2.b }})J",
         R"J({})J", R"J(51x)J"},
        {"nested_loops",
         R"J({% for a in [1,2] %}{% for b in ['x','y'] %}{{ a }}{{ b }}{{ loop.index }}{% endfor %}{{ loop.index }};{% endfor %})J",
         R"J({})J", R"J(1x11y21;2x12y22;)J"},
        {"string_iter",
         R"J({% for c in 'héy' %}[{{ c }}]{% endfor %}{% for k in {'a':1,'b':2} %}{{ k }}{% endfor %})J",
         R"J({})J", R"J([h][é][y]ab)J"},
        {"trailing_newline", R"J(abc
)J",
         R"J({})J", R"J(abc)J"},
        {"lstrip_start", R"J(   {% if true %}x{% endif %})J", R"J({})J", R"J(x)J"},
        {"lstrip_after_var", R"J({{ 'a' }}   {% if true %}x{% endif %})J", R"J({})J", R"J(a   x)J"},
        {"adjacent_strings", R"J({{ 'a' 'b' "c" }})J", R"J({})J", R"J(abc)J"},
        {"float_fmt",
         R"J({{ 1.0 }} {{ 0.1 + 0.2 }} {{ 1e16 }} {{ 1.5e-5 }} {{ 123456789.0 }} {{ 1/3 }} {{ 2.0 * 3 }})J",
         R"J({})J", R"J(1.0 0.30000000000000004 1e+16 1.5e-05 123456789.0 0.3333333333333333 6.0)J"},
};

TEST(ChatTemplateJinja, SnippetsMatchJinja2) {
  for (const auto& s : kSnippets) {
    SCOPED_TRACE(s.name);
    EXPECT_EQ(run(s.source, s.vars), s.expected);
  }
}

TEST(ChatTemplateJinja, NewlinesAreNormalised) {
  EXPECT_EQ(run("a\r\n{% if true %}\r\nb\r\n{% endif %}\r\nc"), "a\nb\nc");
}

TEST(ChatTemplateJinja, ToolsKeepTheRequestKeyOrder) {
  const auto t = ChatTemplate::from_source("{{ tools | tojson }}|{{ tools is none }}", opts());
  EXPECT_EQ(t.render(ordered_json::array(), false, ordered_json::parse(R"({"tools": [{"z": 1, "a": 2}]})")),
            R"([{"z": 1, "a": 2}]|False)");
  EXPECT_EQ(t.render(nlohmann::json::array(), false), "null|True");
}

TEST(ChatTemplateJinja, UndefinedAttributeOfUndefinedFails) {
  EXPECT_EQ(run("[{{ missing }}{{ missing | length }}{{ missing is defined }}]"), "[0False]");
  try {
    run("{{ missing.attr }}");
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("'missing' is undefined"));
  }
}

TEST(ChatTemplateMessages, ContentPartsAreJoinedForStringTemplates) {
  const auto t = ChatTemplate::builtin("chatml", opts());
  EXPECT_FALSE(t.takes_content_parts());
  const auto m = ordered_json::parse(
      R"([{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}])");
  EXPECT_EQ(t.render(m, false), "<|im_start|>user\na\nb<|im_end|>\n");
  const auto img =
      ordered_json::parse(R"([{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}])");
  EXPECT_THROW(t.render(img, false), Error);
}

TEST(ChatTemplateMessages, ContentPartsPassThroughWhenTheTemplateIteratesThem) {
  const auto t =
      ChatTemplate::from_source(read_file(kTemplates + "/Mistral-Small-3.2-24B-Instruct-2506.jinja"), opts());
  EXPECT_TRUE(t.takes_content_parts());
  const auto m = ordered_json::parse(
      R"([{"role":"user","content":[{"type":"text","text":"look"},{"type":"image_url","image_url":{"url":"x"}}]}])");
  EXPECT_THAT(t.render(m, true), HasSubstr("[INST]look[IMG][/INST]"));
}

TEST(ChatTemplateMessages, ToolCallArgumentsAreParsed) {
  const auto t = ChatTemplate::from_source(read_file(kTemplates + "/Qwen-Qwen2.5-7B-Instruct.jinja"), opts());
  const auto m = ordered_json::parse(R"([{"role":"user","content":"weather?"},
      {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function",
        "function":{"name":"get_weather","arguments":"{\"city\": \"Paris\", \"unit\": \"c\"}"}}]},
      {"role":"tool","tool_call_id":"c1","content":"20"}])");
  EXPECT_THAT(t.render(m, true),
              HasSubstr("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
                        "{\"city\": \"Paris\", \"unit\": \"c\"}}\n</tool_call><|im_end|>\n"
                        "<|im_start|>user\n<tool_response>\n20\n</tool_response><|im_end|>\n"));
}

TEST(ChatTemplateMessages, MalformedMessagesAreErrors) {
  const auto t = ChatTemplate::builtin("chatml", opts());
  EXPECT_THROW(t.render(ordered_json::object(), true), Error);
  EXPECT_THROW(t.render(ordered_json::parse(R"([{"content":"x"}])"), true), Error);
  EXPECT_THROW(t.render(ordered_json::parse(R"([{"role":"user","content":5}])"), true), Error);
  EXPECT_THROW(t.render(ordered_json::parse(R"([1])"), true), Error);
}

TEST(ChatTemplateBuiltin, TwoTurnsWithASystemMessage) {
  struct Case {
    const char* name;
    const char* bos;
    const char* eos;
    const char* expected;
  };
  const Case cases[] = {
      {"chatml", "", "<|im_end|>",
       "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
       "Hello!<|im_end|>\n<|im_start|>user\nHow are you?<|im_end|>\n<|im_start|>assistant\n"},
      {"llama3", "<|begin_of_text|>", "<|eot_id|>",
       "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
       "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>"
       "\n\n"
       "Hello!<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHow are you?<|eot_id|>"
       "<|start_header_id|>assistant<|end_header_id|>\n\n"},
      {"llama2", "<s>", "</s>",
       "<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] How are you? [/INST]"},
      {"mistral", "<s>", "</s>",
       "<s>[INST] You are terse.\n\nHi [/INST]Hello!</s>[INST] How are you? [/INST]"},
      {"gemma", "<bos>", "<eos>",
       "<bos><start_of_turn>user\nYou are "
       "terse.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n"
       "<start_of_turn>user\nHow are you?<end_of_turn>\n<start_of_turn>model\n"},
      {"phi3", "<s>", "<|endoftext|>",
       "<|system|>\nYou are terse.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello!<|end|>\n<|user|>\n"
       "How are you?<|end|>\n<|assistant|>\n"},
      {"zephyr", "<s>", "</s>",
       "<|system|>\nYou are terse.</s>\n<|user|>\nHi</s>\n<|assistant|>\nHello!</s>\n<|user|>\nHow are "
       "you?</s>\n"
       "<|assistant|>\n"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(ChatTemplate::builtin(c.name, opts(c.bos, c.eos)).render(two_turns(), true), c.expected);
  }
  EXPECT_EQ(ChatTemplate::builtin_names().size(), std::size(cases));
}

TEST(ChatTemplateBuiltin, UnknownNameListsTheKnownOnes) {
  try {
    ChatTemplate::builtin("nope", opts());
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("nope"));
    EXPECT_THAT(e.what(), HasSubstr("chatml, llama2, llama3"));
  }
}

TEST(ChatTemplateBuiltin, RolesMustAlternate) {
  const auto m = ordered_json::parse(R"([{"role":"user","content":"a"},{"role":"user","content":"b"}])");
  try {
    ChatTemplate::builtin("gemma", opts()).render(m, true);
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "Conversation roles must alternate user/assistant/user/assistant/...");
  }
}

void expect_syntax_error(const std::string& src, const std::string& where) {
  try {
    ChatTemplate::from_source(src, opts());
    ADD_FAILURE() << "no error for " << src;
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(where)) << src;
  }
}

TEST(ChatTemplateErrors, SyntaxErrorsGiveLineAndColumn) {
  expect_syntax_error("hello\n{% if x %}\nno end",
                      "line 3, column 7: unexpected end of template, expected 'elif'");
  expect_syntax_error("a\n  {{ 1 + }}", "line 2, column 10: unexpected end of expression");
  expect_syntax_error("{{ 'abc }}", "line 1, column 4: unterminated string");
  expect_syntax_error("{% for x in y %}{% endif %}",
                      "line 1, column 20: unknown or unsupported statement 'endif'");
  expect_syntax_error("x\n\n {{ y | nosuchfilter }}", "line 3, column 9: no filter named 'nosuchfilter'");
  expect_syntax_error("{{ y is nosuchtest }}", "no test named 'nosuchtest'");
  expect_syntax_error("{# open comment", "line 1, column 1: unterminated comment");
  expect_syntax_error("{% break %}", "'break' outside a loop");
  expect_syntax_error("{{ x", "unterminated '{{'");
}

TEST(ChatTemplateErrors, RaiseExceptionSurfacesItsMessage) {
  try {
    run("{% if true %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}");
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "Only user and assistant roles are supported!");
  }
}

TEST(ChatTemplateErrors, RuntimeErrorsNameThePosition) {
  try {
    run("line1\n{{ 1 + 'a' }}");
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("line 2"));
    EXPECT_THAT(e.what(), HasSubstr("unsupported operand"));
  }
}

void expect_limit(const std::string& src, const std::string& what, ChatTemplateOptions o = opts()) {
  try {
    run(src, "{}", std::move(o));
    ADD_FAILURE() << "no error for " << src;
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(what)) << src;
  }
}

TEST(ChatTemplateLimits, HostileTemplatesFailCleanly) {
  auto small = opts();
  small.limits.max_output_bytes = 1 << 16;
  small.limits.max_loop_iterations = 10'000;
  expect_limit("{% for i in range(9000) %}{% for j in range(9000) %}{% endfor %}{% endfor %}",
               "loop iterations", small);
  expect_limit("{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}",
               "loop iterations", small);
  expect_limit("{{ range(1000000000) | length }}", "range() exceeds", small);
  expect_limit("{% for i in range(5000) %}{{ 'abcdefghijklmnop' }}{% endfor %}", "output exceeds", small);
  expect_limit("{{ 'x' * 1000000000000 }}", "output exceeds", small);
  expect_limit(
      "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
      "output exceeds", small);
  expect_limit("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "nested macro calls");
  expect_limit("{% macro f() %}{{ f() ~ f() }}{% endmacro %}{{ f() }}", "nested macro calls");
  auto few_steps = opts();
  few_steps.limits.max_steps = 1000;
  expect_limit("{% for i in range(900) %}{{ i + 1 }}{% endfor %}", "evaluation steps", few_steps);
  expect_limit("{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}", "nested too deeply");
}

TEST(ChatTemplateLimits, DeepNestingIsASyntaxErrorNotACrash) {
  std::string deep;
  for (int i = 0; i < 1000; ++i) deep += "{% if true %}";
  expect_syntax_error(deep, "nested too deeply");
  expect_syntax_error("{{ " + std::string(100000, '-') + "1 }}", "nested too deeply");
  expect_syntax_error("{{ " + std::string(100000, '[') + std::string(100000, ']') + " }}",
                      "nested too deeply");
  expect_syntax_error("{{ " + std::string(100000, '[') + " }}", "unterminated '{{'");
}

}  // namespace
}  // namespace llmd::model
