#!/usr/bin/env bash
# Brings src/GqaTransformer/PublicAPI.Unshipped.txt up to date with the code (what the analyzer's code fix would do):
# adds every symbol RS0016 reports, drops every one RS0017 reports. Review the diff before committing it.
set -euo pipefail
cd "$(dirname "$0")/.."
file=src/GqaTransformer/PublicAPI.Unshipped.txt
log=$(dotnet build src/GqaTransformer --no-incremental 2>&1 || true)
added=$(echo "$log" | { grep "RS0016" || true; } | sed -E "s/.*Symbol '(.*)' is not part of the declared public API.*/\1/" | sort -u)
removed=$(echo "$log" | { grep "RS0017" || true; } | sed -E "s/.*Symbol '(.*)' is part of the declared API.*/\1/" | sort -u)
{ echo '#nullable enable'; { grep -v '^#nullable' "$file" | grep -vxF -f <(echo "$removed"); echo "$added"; } | grep -v '^$' | sort -u; } > "$file.new"
mv "$file.new" "$file"
echo "added $(echo "$added" | grep -c . || true), removed $(echo "$removed" | grep -c . || true)"
