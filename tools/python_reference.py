#!/usr/bin/env python3
"""Writes the Python references of the chat tests, made by Hugging Face's own Python code:

- tokenizers/expected-python.json: ids and decoded text from the `tokenizers` library (HF's Rust tokenizers) for the
  texts of tokenizers/expected.json and every tokenizer fetched by tools/fetch_tokenizer_fixtures.sh;
- chat-templates/expected-python.json: renders by transformers' own chat-template code (jinja2 with trim_blocks,
  lstrip_blocks, its tojson and raise_exception) of the templates beside it and of the real templates in the fetched
  tokenizer_config.json files, for every conversation of chat-templates/expected.json, and of the hand-written jinja2
  snippets of ChatTemplateTests.Follows_python_jinja2.

Run where `tokenizers` and `transformers` are installed (the GPU machine has both; no network is needed), from the
repository root:  python3 tools/python_reference.py OUT_DIR   then copy OUT_DIR's two files into TestData.
"""
import json
import os
import re
import sys

import jinja2
import tokenizers
import transformers
from tokenizers import Tokenizer
from transformers.utils import chat_template_utils

DATA = "tests/GqaTransformer.Tests/TestData"
out_dir = sys.argv[1] if len(sys.argv) > 1 else "."
os.makedirs(out_dir, exist_ok=True)


def write(name, value):
    with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
        json.dump(value, f, ensure_ascii=False, indent=1)
        f.write("\n")


# --- tokenizers -------------------------------------------------------------------------------------------------------
tok_dir = os.path.join(DATA, "tokenizers")
with open(os.path.join(tok_dir, "expected.json"), encoding="utf-8") as f:
    js_cases = json.load(f)["cases"]
texts = list(dict.fromkeys(c["text"] for c in js_cases))
cases = []
for name in sorted(os.listdir(tok_dir)):
    path = os.path.join(tok_dir, name, "tokenizer.json")
    if not os.path.isfile(path):
        continue
    tok = Tokenizer.from_file(path)
    for text in texts:
        plain = tok.encode(text, add_special_tokens=False).ids
        cases.append({
            "tokenizer": name, "text": text,
            "ids": tok.encode(text, add_special_tokens=True).ids,
            "ids_no_special": plain,
            "decoded": tok.decode(plain, skip_special_tokens=False) if plain else "",
            "decoded_skip_special": tok.decode(plain, skip_special_tokens=True) if plain else "",
        })
write("tokenizers-expected-python.json", {"generator": f"tokenizers {tokenizers.__version__} (Python)", "cases": cases})
print(f"tokenizers: {len(cases)} cases")


# --- chat templates ---------------------------------------------------------------------------------------------------
def render(source, **variables):
    """transformers' own path: its compiled template (environment, filters, raise_exception), as apply_chat_template."""
    try:
        return {"output": chat_template_utils._compile_jinja_template(source).render(**variables)}
    except jinja2.exceptions.TemplateError as e:
        return {"error": str(e)}


ct_dir = os.path.join(DATA, "chat-templates")
with open(os.path.join(ct_dir, "expected.json"), encoding="utf-8") as f:
    js = json.load(f)
conversations = js["conversations"]
results = []
for c in js["cases"]:
    with open(os.path.join(ct_dir, c["template"]), encoding="utf-8") as f:
        source = f.read()
    variables = {"messages": conversations[c["conversation"]], "add_generation_prompt": c["add_generation_prompt"],
                 "bos_token": "<s>", "eos_token": "</s>", "tools": c["tools"]}
    results.append({k: c[k] for k in ("template", "conversation", "add_generation_prompt", "tools")} | render(source, **variables))

# the real templates in the fetched tokenizer_config.json files, with their own bos and eos tokens
for name in sorted(os.listdir(tok_dir)):
    path = os.path.join(tok_dir, name, "tokenizer_config.json")
    if not os.path.isfile(path):
        continue
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    source = config.get("chat_template")
    if not isinstance(source, str):
        continue
    token = lambda v: v.get("content") if isinstance(v, dict) else v
    for conversation, messages in conversations.items():
        for add_generation_prompt in (True, False):
            variables = {"messages": messages, "add_generation_prompt": add_generation_prompt,
                         "bos_token": token(config.get("bos_token")), "eos_token": token(config.get("eos_token")), "tools": None}
            results.append({"template": f"tokenizers/{name}", "conversation": conversation,
                            "add_generation_prompt": add_generation_prompt, "tools": None,
                            "bos_token": variables["bos_token"], "eos_token": variables["eos_token"]} | render(source, **variables))

# the hand-written snippets of ChatTemplateTests.Follows_python_jinja2: [InlineData("source", "expected")] lines
with open("tests/GqaTransformer.Tests/Chat/ChatTemplateTests.cs", encoding="utf-8") as f:
    test_source = f.read()
block = test_source[:test_source.index("public void Follows_python_jinja2")]
block = block[block.rindex("Renders_as_the_reference_does"):]
literal = r'"((?:[^"\\]|\\.)*)"'
unescape = lambda s: json.loads('"' + s.replace("\\'", "'") + '"')
snippets = []
for m in re.finditer(r"\[InlineData\(" + literal + r",\s*" + literal + r"\)\]", block):
    source, expected_by_test = unescape(m.group(1)), unescape(m.group(2))
    snippets.append({"source": source, "expected_by_test": expected_by_test} | render(source))
mismatches = [s for s in snippets if s.get("output") != s["expected_by_test"]]
write("chat-templates-expected-python.json", {
    "generator": f"transformers {transformers.__version__} chat_template_utils, jinja2 {jinja2.__version__} (Python)",
    "conversations": conversations, "cases": results, "snippets": snippets})
print(f"chat templates: {len(results)} cases, {sum('error' in r for r in results)} errors; "
      f"snippets: {len(snippets)}, {len(mismatches)} differ from the test's expectation")
for s in mismatches:
    print("  snippet differs:", json.dumps(s, ensure_ascii=False))
