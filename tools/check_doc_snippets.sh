#!/usr/bin/env bash
# Compiles every ```csharp block of README.md and docs/*.md, each as a reader would paste it: a console app's method
# body, its own `using` directives at its head, nothing else in scope but the SDK's implicit usings. Each block becomes
# one static method of its own class in a generated project (artifacts/doc-snippets, git-ignored) that references the
# library as the samples do; the build fails on any error or warning and names the document and block.
# Usage: tools/check_doc_snippets.sh  (from anywhere; .ci/run calls it)
set -euo pipefail
cd "$(dirname "$0")/.."
out=artifacts/doc-snippets
rm -rf "$out"; mkdir -p "$out"
cat > "$out/DocSnippets.csproj" <<'XML'
<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup>
    <OutputType>Library</OutputType>
    <IsPackable>false</IsPackable>
    <NoWarn>$(NoWarn);CS1591</NoWarn> <!-- the snippets' wrappers need no XML docs -->
  </PropertyGroup>
  <ItemGroup>
    <ProjectReference Include="../../src/GqaTransformer/GqaTransformer.csproj" />
  </ItemGroup>
</Project>
XML
count=0
for doc in README.md docs/*.md; do
  count=$((count + $(awk -v doc="$doc" -v root="$PWD" -v out="$out" '
    BEGIN { name = doc; gsub(/[^A-Za-z0-9]/, "_", name) }
    function flush(   file, i) {
      file = sprintf("%s/%s_%d.cs", out, name, n)
      printf "// %s, C# block %d (line %d)\n", doc, n, start > file
      for (i = 1; i <= nu; i++) print usings[i] > file
      printf "namespace DocSnippets;\n#line %d \"%s\"\npublic static class %s_%d\n{\n    public static async Task Run()\n    {\n", start, root "/" doc, name, n > file
      for (i = 1; i <= nb; i++) print body[i] > file
      print "        await Task.CompletedTask;\n    }\n}" > file
      close(file)
    }
    /^```csharp/ { inside = 1; n++; nu = 0; nb = 0; start = NR + 1; next }
    /^```/ && inside { inside = 0; flush(); next }
    inside && nb == 0 && /^using [A-Za-z][A-Za-z0-9_.]*;|^using static [A-Za-z][A-Za-z0-9_.]*;/ { usings[++nu] = $0; next }
    inside { body[++nb] = $0 }
    END { print n + 0 }' "$doc")))
done
echo "doc snippets: $count C# blocks extracted from README.md and docs/*.md"
[ "$count" -gt 0 ] || { echo "no C# block found: the extractor is broken"; exit 1; }
dotnet build "$out/DocSnippets.csproj" -c Release -nologo -clp:NoSummary
