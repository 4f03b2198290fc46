// Encodes and decodes varied text with the tokenizers of tests/GqaTransformer.Tests/TestData/tokenizers (fetched by
// tools/fetch_tokenizer_fixtures.sh) through transformers.js's tokenizer code (npm @lenml/tokenizers, its port for
// Node), and writes the ids and decoded text to expected.json there: the reference of HfTokenizerTests.
//   mkdir -p /tmp/tokref && cd /tmp/tokref && npm install @lenml/tokenizers@3.7.2 && cd - &&
//   NODE_PATH=/tmp/tokref/node_modules node tools/tokenizer_reference.mjs
import { createRequire } from "module";
import fs from "fs";
import path from "path";
const require = createRequire(import.meta.url);
const { TokenizerLoader } = require("@lenml/tokenizers");
const dir = "tests/GqaTransformer.Tests/TestData/tokenizers";
export const texts = [
  "Hello, my dog is cute",
  "",
  " ",
  "   leading and   inner runs   of spaces   ",
  "tabs\tand\nnew\n\nlines\r\nand a carriage return",
  "def f(x):\n\treturn x ** 2  # comment\n\n\tif x: pass",
  "日本語のテキスト、中文文本，한국어 텍스트",
  "emoji 🤗🎉👍🏽 and flags 🇫🇷 and ZWJ 👩‍💻",
  "don't won't I'm you're they've we'll she'd DON'T",
  "12345 + 67890 = 80235; 3.14159; 1,000,000; 2026-12-02",
  "café naïve résumé Ångström", // composed
  "cafe\u0301 nai\u0308ve",        // decomposed: NFC changes it
  "Ελληνικά, русский, עברית, العربية, हिन्दी",
  "MixedCASE CamelCase snake_case kebab-case",
  "a\u00a0non-breaking\u2009thin\u3000ideographic space",
  "<|endoftext|>",
  "before<|endoftext|>after <|im_start|>user\nhi<|im_end|>",
  "<s>[INST] hello [/INST]</s>",
  "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>",
  "<unk> and <0x0A> as plain text",
  "    indented code\n        more",
  "!!!???...,,,;;; ((([[[{{{",
  // Gemma 3 and Qwen3: their turn and thinking markers, runs of newlines and tabs (added tokens in Gemma 3), a literal
  // metaspace, characters only byte fallback can spell, and a long piece (SentencePiece-style files merge a whole text).
  "<start_of_turn>user\nWho are you?<end_of_turn>\n<start_of_turn>model\n",
  "<|im_start|>assistant\n<think>\n\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|im_end|>",
  "many\n\n\n\n\nnewlines and\t\t\ttabs\n\t\n",
  "literal ▁▁ metaspace, <unused0> <mask> [multimodal] <image_soft_token>",
  "rare 𓀀 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \uE000 \u0001 ꙮ",
  "The quick brown fox jumps over the lazy dog. ".repeat(40),
];
const cases = [];
for (const name of fs.readdirSync(dir).filter(n => fs.existsSync(path.join(dir, n, "tokenizer.json"))).sort()) {
  const tokenizer = TokenizerLoader.fromPreTrained({
    tokenizerJSON: JSON.parse(fs.readFileSync(path.join(dir, name, "tokenizer.json"), "utf8")),
    tokenizerConfig: JSON.parse(fs.readFileSync(path.join(dir, name, "tokenizer_config.json"), "utf8")),
  });
  for (const text of texts) {
    const withSpecial = tokenizer.encode(text, { add_special_tokens: true });
    const plain = tokenizer.encode(text, { add_special_tokens: false });
    cases.push({
      tokenizer: name, text, ids: withSpecial, ids_no_special: plain,
      decoded: plain.length ? tokenizer.decode(plain, { skip_special_tokens: false, clean_up_tokenization_spaces: false }) : "",
      decoded_skip_special: plain.length ? tokenizer.decode(plain, { skip_special_tokens: true, clean_up_tokenization_spaces: false }) : "",
    });
  }
}
fs.writeFileSync(path.join(dir, "expected.json"), JSON.stringify({ generator: "@lenml/tokenizers 3.7.2 (transformers.js tokenizers)", cases }, null, 1) + "\n");
console.log(`${cases.length} cases`);
