// Encodes and decodes the texts of tokenizers/expected.json with every tokenizer of tests/GqaTransformer.Tests/TestData/
// tokenizers (fetched by tools/fetch_tokenizer_fixtures.sh) through Hugging Face's own tokenizers (the Rust library, by
// its Node binding, npm "tokenizers"), and writes expected-python.json there: the same library and version that
// tools/python_reference.py runs through Python (on the GPU machine), here without one. Run after
// tools/tokenizer_reference.mjs (it takes that file's texts):
//   mkdir -p /tmp/tokref && cd /tmp/tokref && npm install tokenizers@0.23.2 && cd - &&
//   NODE_PATH=/tmp/tokref/node_modules node tools/tokenizer_reference_hf.mjs
import { createRequire } from "module";
import fs from "fs";
import path from "path";
const require = createRequire(import.meta.url);
const { Tokenizer } = require("tokenizers");
const version = JSON.parse(fs.readFileSync(require.resolve("tokenizers/package.json"), "utf8")).version;
const dir = "tests/GqaTransformer.Tests/TestData/tokenizers";
const texts = [...new Set(JSON.parse(fs.readFileSync(path.join(dir, "expected.json"), "utf8")).cases.map(c => c.text))];
const cases = [];
for (const name of fs.readdirSync(dir).filter(n => fs.existsSync(path.join(dir, n, "tokenizer.json"))).sort()) {
  const tokenizer = Tokenizer.fromFile(path.join(dir, name, "tokenizer.json"));
  for (const text of texts) {
    const ids = (await tokenizer.encode(text, null, { addSpecialTokens: true })).getIds();
    const plain = (await tokenizer.encode(text, null, { addSpecialTokens: false })).getIds();
    cases.push({
      tokenizer: name, text, ids, ids_no_special: plain,
      decoded: plain.length ? await tokenizer.decode(plain, false) : "",
      decoded_skip_special: plain.length ? await tokenizer.decode(plain, true) : "",
    });
  }
}
fs.writeFileSync(path.join(dir, "expected-python.json"), JSON.stringify({
  generator: `tokenizers ${version} (HF's Rust library through its Node binding, tools/tokenizer_reference_hf.mjs; tools/python_reference.py writes the same through Python)`,
  cases }, null, 1) + "\n");
console.log(`${cases.length} cases`);
