// Renders the chat templates in tests/GqaTransformer.Tests/TestData/chat-templates with Hugging Face's own Jinja
// implementation for JavaScript (npm @huggingface/jinja, as transformers.js applies chat templates) and writes what it
// renders, or the error it raises, to expected.json beside them: the independent reference of ChatTemplateTests.
//   mkdir -p /tmp/jinja && cd /tmp/jinja && npm install @huggingface/jinja@0.5.11 && cd - &&
//   NODE_PATH=/tmp/jinja/node_modules node tools/chat_template_reference.mjs
import { createRequire } from "module";
import fs from "fs";
import path from "path";
const require = createRequire(import.meta.url);
const { Template } = require("@huggingface/jinja");
const dir = "tests/GqaTransformer.Tests/TestData/chat-templates";
const conversations = {
  full: [
    { role: "system", content: "  You are terse.  " },
    { role: "user", content: "hello there!" },
    { role: "assistant", content: "Hi. How can I help?" },
    { role: "user", content: "what is 2+2?" },
  ],
  no_system: [
    { role: "user", content: "hello" },
    { role: "assistant", content: "a reply, with a comma" },
  ],
  unicode: [
    { role: "user", content: "日本語のテキスト 🤗 emoji\n\ttabbed \"quoted\" 'single' back\\slash" },
  ],
  not_alternating: [
    { role: "user", content: "one" },
    { role: "user", content: "two" },
  ],
};
const tools = [{ type: "function", function: { name: "get_weather", description: "Weather for a city", parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } } }];
const cases = [];
for (const file of fs.readdirSync(dir).filter(f => f.endsWith(".jinja")).sort()) {
  for (const [name, messages] of Object.entries(conversations)) {
    for (const add_generation_prompt of [true, false]) {
      cases.push({ template: file, conversation: name, add_generation_prompt, tools: null });
    }
  }
  if (file.startsWith("qwen")) cases.push({ template: file, conversation: "full", add_generation_prompt: true, tools });
}
const results = cases.map(c => {
  const template = new Template(fs.readFileSync(path.join(dir, c.template), "utf8"));
  const vars = { messages: conversations[c.conversation], add_generation_prompt: c.add_generation_prompt, bos_token: "<s>", eos_token: "</s>" };
  if (c.tools) vars.tools = c.tools;
  try { return { ...c, output: template.render(vars) }; } catch (e) { return { ...c, error: String(e.message) }; }
});
fs.writeFileSync(path.join(dir, "expected.json"), JSON.stringify({ generator: "@huggingface/jinja 0.5.11", conversations, cases: results }, null, 1) + "\n");
console.log(`${results.length} cases, ${results.filter(r => r.error).length} errors`);
