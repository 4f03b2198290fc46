using System.Text.Json;
using FluentAssertions;
using GqaTransformer;
using Xunit;

namespace GqaTransformer.Tests;

/// <summary>
/// Jinja constructs one by one, as transformers' jinja2 environment renders them (the "snippets" of
/// TestData/chat-templates/real-expected.json, from tools/template_reference.py): JSON integers, tools/documents None
/// when absent, tojson's options, |safe markup joined by +, select filters over None, dicts with int keys, sort,
/// filter and call blocks, varargs/kwargs, m.content.0, and the one-pass generators of map/select/reverse.
/// Where jinja2 raises, we must raise a ChatTemplateException.
/// </summary>
public class ChatTemplateSnippetTests
{
    private static readonly Lazy<JsonDocument> Expected = new(() =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixtures.Root, "chat-templates", "real-expected.json"))));

    public static TheoryData<int> Snippets()
    {
        var data = new TheoryData<int>();
        for (int i = 0; i < Expected.Value.RootElement.GetProperty("snippets").GetArrayLength(); i++) data.Add(i);
        return data;
    }

    [Theory]
    [MemberData(nameof(Snippets))]
    public void Renders_as_transformers_jinja2_does(int index)
    {
        var snippet = Expected.Value.RootElement.GetProperty("snippets")[index];
        string source = snippet.GetProperty("source").GetString()!;
        var variables = new Dictionary<string, object?> { ["messages"] = new List<object?>(), ["add_generation_prompt"] = false };
        if (snippet.TryGetProperty("variables", out var given))
            foreach (var p in given.EnumerateObject()) variables[p.Name] = p.Value;
        var render = () => ChatTemplate.Parse(source).Render(variables);
        if (snippet.TryGetProperty("error", out var error))
            render.Should().Throw<ChatTemplateException>($"jinja2 raised {error.GetString()} for {source}");
        else
            render().Should().Be(snippet.GetProperty("output").GetString(), source);
    }
}
