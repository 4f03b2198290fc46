#!/usr/bin/env python3
"""Writes tests/.../chat-templates/real-expected.json: transformers' own renders of real chat templates.

Each template of the manifest (chat-templates/real/manifest.json) is rendered over every conversation below, with
add_generation_prompt true and false (and again with each set of TEMPLATE_KWARGS whose keys the template names, e.g.
Qwen3's enable_thinking true and false; such a case records them as template_kwargs), exactly as transformers' apply_chat_template does: get_chat_template's choice of
a named template (a list-form chat_template takes 'tool_use' when tools are given, else 'default'), then
chat_template_utils.render_jinja_template, which renders `_compile_jinja_template(source)` (jinja2's
ImmutableSandboxedEnvironment with trim_blocks, lstrip_blocks, loopcontrols, its tojson, raise_exception and
strftime_now) with messages, tools (None when absent), documents=None, add_generation_prompt, bos_token, eos_token.

transformers itself need not be installed, only jinja2: its chat_template_utils.py is loaded from the path given (a
transformers checkout's src/, e.g. `git --git-dir=MIRROR show REF:src/transformers/utils/chat_template_utils.py`),
with stubs for the package's logging and import_utils. strftime_now sees a fixed clock (FIXED_NOW) so renders repeat;
ChatTemplateTests renders with the same clock.

Usage (repository root):
  TRANSFORMERS_REF="transformers vX.Y" python3 tools/template_reference.py TRANSFORMERS_SRC TEMPLATE_DIR [TEMPLATE_DIR...] > real-expected.json
TEMPLATE_DIRs are searched for each manifest entry's file name (the committed real/ folder, the fetched folder).
"""
import datetime as _dt
import hashlib
import importlib.util
import json
import os
import sys
import types

import jinja2

FIXED_NOW = _dt.datetime(2026, 1, 15, 10, 30, 0)
DATA = "tests/GqaTransformer.Tests/TestData/chat-templates"


def load_transformers(src):
    """transformers.utils.chat_template_utils from src, its package imports stubbed (no torch, no PIL)."""
    pkg = types.ModuleType("transformers"); pkg.__path__ = []
    utils = types.ModuleType("transformers.utils"); utils.__path__ = []
    logging = types.ModuleType("transformers.utils.logging")

    class _Logger:
        def __getattr__(self, name):
            return lambda *a, **k: None
    logging.get_logger = lambda name: _Logger()
    import_utils = types.ModuleType("transformers.utils.import_utils")
    import_utils.is_jinja_available = lambda: True
    import_utils.is_torch_available = lambda: False
    import_utils.is_vision_available = lambda: False
    utils.logging = logging
    if "packaging" not in sys.modules:  # only version.parse(jinja2.__version__) >= 3.1.0 is asked
        packaging = types.ModuleType("packaging"); version = types.ModuleType("packaging.version")
        version.parse = lambda v: tuple(int(p) for p in v.split(".")[:3] if p.isdigit())
        packaging.version = version
        sys.modules.update({"packaging": packaging, "packaging.version": version})
    sys.modules.update({"transformers": pkg, "transformers.utils": utils, "transformers.utils.logging": logging,
                        "transformers.utils.import_utils": import_utils})
    path = os.path.join(src, "transformers", "utils", "chat_template_utils.py")
    spec = importlib.util.spec_from_file_location("transformers.utils.chat_template_utils", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)

    class FixedDatetime(_dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return FIXED_NOW
    module.datetime = FixedDatetime
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    return module, digest


WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the weather for a city.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "The city"},
        "days": {"type": "integer", "description": "How many days", "minimum": 1, "maximum": 14},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city"]}}}

CONVERSATIONS = {
    "plain": {"messages": [{"role": "user", "content": "Hello, how are you?"}]},
    "system": {"messages": [{"role": "system", "content": "You are a helpful assistant."},
                            {"role": "user", "content": "What is 2 + 2?"}]},
    "multi_turn": {"messages": [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "Another one?"}]},
    "tool_calling": {"tools": [WEATHER_TOOL], "messages": [
        {"role": "system", "content": "You can call tools."},
        {"role": "user", "content": "Weather in Paris for 3 days?"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "abc123XYZ", "type": "function", "function": {
            "name": "get_weather",
            "arguments": {"city": "Paris", "days": 3, "zero": 0, "ratio": 0.5, "big": 12345678901, "neg": -7,
                          "metric": True, "skip": False, "none": None,
                          "nested": {"list": [1, 2.0, "three", {"deep": [0]}], "empty": {}}}}}]},
        {"role": "tool", "tool_call_id": "abc123XYZ", "name": "get_weather",
         "content": "{\"temperature\": 21, \"condition\": \"sunny\"}"},
        {"role": "assistant", "content": "Sunny, 21 degrees."},
        {"role": "user", "content": "Thanks!"}]},
    "tool_calling_text_args": {"tools": [WEATHER_TOOL], "messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "def456UVW", "type": "function", "function": {
            "name": "get_weather", "arguments": "{\"city\": \"Oslo\", \"days\": 1}"}}]},
        {"role": "tool", "tool_call_id": "def456UVW", "name": "get_weather", "content": "-3 degrees"}]},
    "reasoning": {"messages": [
        {"role": "user", "content": "Is 7 prime?"},
        {"role": "assistant", "content": "<think>\nIt has no divisors but 1 and 7.\n</think>\n\nYes.",
         "reasoning_content": "It has no divisors but 1 and 7."},
        {"role": "user", "content": "And 9?"}]},
    "parallel_tool_calls": {"tools": [WEATHER_TOOL], "messages": [
        {"role": "user", "content": "Weather in Rome and Lima?"},
        {"role": "assistant", "content": "Checking both.", "tool_calls": [
            {"id": "call1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Rome"}}},
            {"id": "call2", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Lima", "unit": "celsius"}}}]},
        {"role": "tool", "tool_call_id": "call1", "name": "get_weather", "content": "18 degrees"},
        {"role": "tool", "tool_call_id": "call2", "name": "get_weather", "content": "24 degrees"},
        {"role": "assistant", "content": "Rome 18, Lima 24."}]},
    "unicode": {"messages": [
        {"role": "system", "content": "Réponds en français — s'il te plaît."},
        {"role": "user", "content": "Grüße 🌍! 日本語 \"quoted\" <b>&amp;</b> back\\slash\ttab\nnew line"},
        {"role": "assistant", "content": "Ça va ✓ 😀"},
        {"role": "user", "content": "ещё раз 👍🏽"}]},
}


# Variables a template may read beyond the conversation, passed as apply_chat_template passes its extra keyword
# arguments (render_jinja_template's **kwargs): each set renders every conversation again, for the templates whose
# source names all of its keys (Qwen3's, SmolLM3's, DeepSeek's and GLM's enable_thinking).
TEMPLATE_KWARGS = [{"enable_thinking": True}, {"enable_thinking": False}]


# Jinja constructs checked one by one (ChatTemplateSnippetTests), each rendered as apply_chat_template renders a
# template: messages (here none unless given), tools=None, documents=None, add_generation_prompt=False, plus variables.
SNIPPETS = [
    {"source": "{{ tools is defined }} {{ tools is none }} {{ documents is none }}"},
    {"source": "{% for m in messages %}{{ m.args.n }} {{ m.args.x }} {{ m.args | tojson }}{% endfor %}",
     "variables": {"messages": [{"args": {"n": 0, "x": 1.0, "b": 12345678901, "f": 0.5, "t": True}}]}},
    {"source": "{{ {'é': 'ü', 'k': [1, 2]} | tojson(ensure_ascii=True) }}|{{ {'k': [1, 2]} | tojson(separators=(',', ':')) }}"},
    {"source": "{{ {'k': [1, 2]} | tojson(indent=2, separators=(',', ': ')) }}|{{ {'k': 1} | tojson(false, 1) }}|{{ {'k': []} | tojson(indent='\t') }}"},
    {"source": "{{ {'b': 1, 'a': {'d': 2, 'c': 3}} | tojson(sort_keys=true) }}|{{ {1: 'a', 2.5: 'b', true: 'c', none: 'd'} | tojson }}"},
    {"source": "{{ 'a<'|safe + '<b>&' + \"'\" + '\"' }}|{{ '<b>' + 'x'|safe }}|{{ 'a'|safe ~ '<b>' }}|{{ ('a'|safe + '<') | length }}"},
    {"source": "{% set s = 'x'|safe %}{{ s + '<' }}|{{ ('<'|safe + '>') + '&' }}"},
    {"source": "{{ none | selectattr('x') | list }}|{{ none | rejectattr('x', 'equalto', 1) | list }}|{{ none | map(attribute='x') | list }}|{{ none | select | list }}"},
    {"source": "{{ {1: 'a', 2: 'b'}[1] }}|{{ {1: 'a'} }}|{{ {1: 'a', 2.0: 'b', True: 'c'} }}|{{ {1: 'a'}.get(1) }}|{{ 1 in {1: 'a'} }}|{{ {none: 1} }}"},
    {"source": "{% for k, v in {4096: 1, 512: 2} | dictsort %}{{ k + 1 }}:{{ v }} {% endfor %}{% for k, v in {'b': 1, 'A': 2, 'a': 3} | dictsort %}{{ k }}{% endfor %}"},
    {"source": "{{ [3, 1, 2] | sort }}|{{ ['b', 'A', 'a', 'B'] | sort }}|{{ ['b', 'A', 'a'] | sort(case_sensitive=true) }}|{{ [{'n': 2}, {'n': 1}] | sort(attribute='n') }}|{{ [3, 1, 2] | sort(reverse=true) }}|{{ [2, 1] | sort(true) }}"},
    {"source": "{% filter upper %}ab{{ 'c' }}{% endfilter %}|{% filter trim %}  x  {% endfilter %}|{% filter replace('a', 'b') | upper %}aa{% endfilter %}"},
    {"source": "{% macro f() %}[{{ caller() }}]{% endmacro %}{% call f() %}in{% endcall %}|{% macro g(n) %}{% for i in range(n) %}{{ caller(i) }}{% endfor %}{% endmacro %}{% call(i) g(3) %}<{{ i }}>{% endcall %}"},
    {"source": "{% macro f(a) %}{{ a }}{{ varargs | list }}{{ kwargs }}{% endmacro %}{{ f(1, 2, 3, x=4) }}|{{ f(5) }}"},
    {"source": "{% macro f(a) %}{{ a }}{% endmacro %}{{ f(1, 2) }}"},
    {"source": "{% macro f(a) %}{{ a }}{% endmacro %}{{ f(1, b=2) }}"},
    {"source": "{% set m = {'content': [{'type': 'text'}]} %}{{ m.content.0.type }}"},
    {"source": "{{ [1, 2] | map('string') | tojson }}"},
    {"source": "{{ ([] | select) | length }}"},
    {"source": "{{ [1, 2] | reverse | tojson }}"},
    {"source": "{% set g = [1, 2] | map('string') %}{{ g | list }}{{ g | list }}|{{ 'x' if [] | select else 'y' }}|{{ [1, 2] | reverse | list }}|{{ [1, 2, 1] | unique | list }}|{{ [1, 2] | select | first }}"},
    {"source": "{{ namespace(a=1) | tojson }}"},
    {"source": "{{ [] | min }}|{{ [] | max }}|{{ [3, 1] | min }}|{{ ['b', 'a'] | max }}|{{ [] | first }}|{{ [1.5, 2] | sum }}"},
    {"source": "{{ 'a-b-c'.split('-', 1) }}|{{ '  x '.strip() }}|{{ 'xxhixx'.strip('x') }}|{{ 'Hello'.startswith(('He', 'x')) }}|{{ 'abc'.find('c') }}|{{ 'a\nb'.splitlines() if false else 1 }}"},
    {"source": "{{ 3 / 2 }}|{{ 10 // 3 }}|{{ -10 % 3 }}|{{ 2 ** 0.5 }}|{{ 1e3 }}|{{ 0.1 + 0.2 }}|{{ 1.0 }}|{{ 100000000000000000000.0 }}|{{ 1e-7 }}"},
    {"source": "{{ 'x' ~ 1 ~ 1.0 ~ none ~ true }}|{{ [1, 'a', none, true, 1.5] | join('/') }}|{{ {'a': none} }}|{{ 'it\\'s' }}|{{ ['it\\'s', \"q\\\"\"] }}"},
    {"source": "{% for a, b in [[1, 2], [3, 4]] %}{{ a + b }}{{ loop.index }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.revindex }}{% endfor %}|{% for k in {'x': 1, 'y': 2} %}{{ k }}{% endfor %}|{% for i in [] %}x{% else %}empty{% endfor %}"},
    {"source": "{{ 'abc' | upper }}|{{ 'ABC' | lower }}|{{ 'hello world' | title }}|{{ 'x' | center(5) if false else 'c' }}|{{ '%s-%d' % ('a', 3) if false else 'p' }}|{{ 'a b  c' | wordcount }}|{{ 3.7 | int }}|{{ '4' | int + 1 }}|{{ 'x' | float }}|{{ -3 | abs }}|{{ 2.567 | round(2) }}|{{ 2.5 | round }}"},
    {"source": "{{ none is none }}|{{ 1 is number }}|{{ 'a' is string }}|{{ [1] is iterable }}|{{ {} is mapping }}|{{ 3 is odd }}|{{ 4 is divisibleby 2 }}|{{ x is undefined }}|{{ 1 is integer }}|{{ 1.0 is float }}|{{ true is boolean }}|{{ 'a' in ['a'] }}|{{ 'b' not in 'abc' }}"},
    {"source": "{{ [1, 2, 3][1:] }}|{{ [1, 2, 3][::-1] }}|{{ 'hello'[-3:] }}|{{ [1, 2, 3] | length }}|{{ {'a': 1} | length }}|{{ [1, [2, 3]] | list | last }}|{{ {'a': 1, 'b': 2} | items | list }}|{{ {'a': 1}.items() | list }}"},
    {"source": "{{ 'x' | default('d') }}|{{ '' | default('d') }}|{{ '' | default('d', true) }}|{{ none | default('d') }}|{{ undefined_thing | default('d') }}|{{ [1, 2] | map('int') | sum }}|{{ [' a', 'b '] | map('trim') | join }}|{{ ['a', 'b'] | map('upper') | list }}"},
    {"source": "{% set x = [1, 2] %}{% set y = x + [3] %}{{ y }}|{{ x }}|{% set d = {'a': 1} %}{{ d.a }}{{ d['a'] }}{{ d.get('b', 5) }}{{ d.b is defined }}|{{ (1, 2) }}|{{ (1,) }}|{{ () }}"},
    {"source": "{% for k, v in {'a': 1, 'b': [2]}.items() %}{{ k }}={{ v }};{% endfor %}|{% for x in [1, 2, 3] %}{{ loop.previtem | default('-') }}{{ loop.nextitem | default('-') }}{{ loop.cycle('a', 'b') }}{% endfor %}"},
    {"source": "{{ 'a\u00e9\\n\\t\\u0001\"\\\\' | tojson }}|{{ none | tojson }}|{{ 1.5 | tojson }}|{{ 'x' | string }}|{{ none | string }}|{{ 12 | string | length }}|{{ [1] | string }}|{{ '\\x41\\U0001F600\\u00e9\\d' }}"},
    {"source": "{{ 'line1\nline2\n\nline4' | indent(2) }}|{{ 'a\nb' | indent(2, true) }}|{{ 'a\n\nb' | indent(2, blank=true) }}|{{ 'a\nb' | indent('> ') }}"},
    {"source": "{{ '{} and {}'.format('x', 2) }}|{{ ' a b '.split(' ') }}|{{ 'a  b'.split() }}|{{ 'AbC'.lower() }}{{ 'abc'.upper() }}|{{ 'hello world'.title() }}|{{ 'x'.rstrip() }}|{{ 'a,b'.split(',') | join('+') }}|{{ 'ab'.endswith('b') }}|{{ '12'.isdigit() }}"},
    {"source": "{{ true and 'x' }}|{{ false or 'y' }}|{{ none or [] }}|{{ 0 and 1 }}|{{ not none }}|{{ 1 if none else 2 }}|{{ 'a' if 'a' in 'abc' }}|{{ 1 < 2 < 3 if false else 'chain' }}|{{ [1] == [1] }}|{{ {'a': 1} == {'a': 1} }}|{{ 1 == 1.0 }}|{{ 'a' != 'b' }}"},
    {"source": "{% set ns = namespace(items=[], n=0) %}{% for i in range(3) %}{% set ns.items = ns.items + [i] %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.items }}{{ ns.n }}|{{ ns.missing is defined }}"},
    {"source": "{% for m in messages %}{{ m.role }}:{{ m.content | trim }}{{ m.tool_calls is defined }}{{ m['name'] | default('anon') }};{% endfor %}",
     "variables": {"messages": [{"role": "user", "content": "  hi  "}, {"role": "tool", "content": "r", "name": "t"}]}},
    {"source": "{{ raise_exception('stop here') }}"},
    {"source": "{{ x.y }}"},
    {"source": "{{ [1, 2].append(3) }}"},
    {"source": "{{ 1 + 'a' }}"},
    {"source": "{{ 1 / 0 }}"},
    {"source": "{{ [1, 2][5] }}|{{ {'a': 1}['b'] }}|{{ 'abc'[10] }}"},

    {"source": "{{ [{'a': {'b': [5, 6]}}] | map(attribute='a.b.1') | list }}|{{ [{'a': {'n': 2}}, {'a': {'n': 1}}] | sort(attribute='a.n') | map(attribute='a.n') | join(',') }}|{{ [{'a': {'b': 1}}, {'a': {'b': 0}}] | selectattr('a.b') | list | length }}"},
]


def pick(chat_template, tools):
    """tokenization_utils_base.get_chat_template with no chat_template argument: a dict (list-form in the config)
    takes 'tool_use' when tools are given and it has one, else 'default'."""
    if isinstance(chat_template, dict):
        if tools is not None and "tool_use" in chat_template:
            return chat_template["tool_use"]
        if "default" in chat_template:
            return chat_template["default"]
        raise ValueError("This model has multiple chat templates with no default specified!")
    return chat_template


def read_template(entry, dirs):
    for d in dirs:
        path = os.path.join(d, entry["file"])
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                text = f.read()
            if entry["file"].endswith(".json"):  # a tokenizer_config.json: its chat_template, bos and eos
                config = json.loads(text)
                token = lambda v: v.get("content") if isinstance(v, dict) else v
                t = config["chat_template"]
                if isinstance(t, list):  # transformers turns the list form into a dict of name -> template
                    t = {x["name"]: x["template"] for x in t}
                return t, token(config.get("bos_token")), token(config.get("eos_token"))
            return text, "<s>", "</s>"
    return None


def main():
    module, digest = load_transformers(sys.argv[1])
    dirs = sys.argv[2:]
    with open(os.path.join(DATA, "real", "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    cases, missing = [], []
    for entry in manifest["templates"]:
        found = read_template(entry, dirs)
        if found is None:
            missing.append(entry["id"]); continue
        template, bos, eos = found
        sources = template.values() if isinstance(template, dict) else [template]
        kwargs_sets = [{}] + [k for k in TEMPLATE_KWARGS if all(any(key in s for s in sources) for key in k)]
        for kwargs in kwargs_sets:
            for name, conversation in CONVERSATIONS.items():
                tools = conversation.get("tools")
                source = pick(template, tools)
                for add_generation_prompt in (True, False):
                    case = {"template": entry["id"], "sha256": hashlib.sha256(source.encode("utf-8")).hexdigest(),
                            "conversation": name, "add_generation_prompt": add_generation_prompt,
                            "bos_token": bos, "eos_token": eos}
                    if kwargs:
                        case["template_kwargs"] = kwargs
                    try:
                        rendered, _ = module.render_jinja_template(
                            conversations=[conversation["messages"]], tools=tools, documents=None, chat_template=source,
                            add_generation_prompt=add_generation_prompt, bos_token=bos, eos_token=eos, **kwargs)
                        case["output"] = rendered[0]
                    except Exception as e:  # noqa: BLE001 - any failure of transformers is what we must match
                        case["error"] = f"{type(e).__name__}: {e}"
                    cases.append(case)
    snippets = []
    for snippet in SNIPPETS:
        variables = {"messages": [], **snippet.get("variables", {})}
        messages = variables.pop("messages")
        try:
            rendered, _ = module.render_jinja_template(conversations=[messages], tools=None, documents=None,
                                                       chat_template=snippet["source"], add_generation_prompt=False, **variables)
            snippets.append(snippet | {"output": rendered[0]})
        except Exception as e:  # noqa: BLE001
            snippets.append(snippet | {"error": f"{type(e).__name__}: {e}"})
    ref = os.environ.get("TRANSFORMERS_REF", "transformers")  # which transformers the file came from
    json.dump({"generator": f"{ref} chat_template_utils.py (sha256 {digest}...) with jinja2 {jinja2.__version__}, "
                            f"by tools/template_reference.py; strftime_now at {FIXED_NOW.isoformat()}",
               "conversations": CONVERSATIONS, "cases": cases, "snippets": snippets}, sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")
    print(f"{len(cases)} renders, {sum('error' in c for c in cases)} raise; templates not found: {missing}", file=sys.stderr)


if __name__ == "__main__":
    main()
