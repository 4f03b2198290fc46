using System.Text.Json;
using FluentAssertions;
using GqaTransformer;
using Xunit;

namespace GqaTransformer.Tests;

/// <summary>
/// Chat templates rendered against transformers' own chat-template code (Python jinja2 with transformers' environment;
/// TestData/chat-templates/expected-python.json, written by tools/python_reference.py for the cases that
/// tools/chat_template_reference.mjs lists in expected.json): Qwen2.5's real template with and without tools, the real
/// Llama 3 and Qwen2.5 templates of the fetched tokenizer_config.json files, and templates written to exercise
/// whitespace control, loops, namespaces, macros, filters, tests, slicing, string methods and raise_exception.
/// expected.json also holds what Hugging Face's JavaScript Jinja renders; it departs from Python in the title filter,
/// and Python is what we follow.
/// </summary>
public class ChatTemplateTests
{
    private static readonly string Directory = Path.Combine(Fixtures.Root, "chat-templates");

    private const string Reference = "expected-python.json";

    public static TheoryData<int> Cases()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Directory, Reference)));
        var data = new TheoryData<int>();
        for (int i = 0; i < doc.RootElement.GetProperty("cases").GetArrayLength(); i++) data.Add(i);
        return data;
    }

    [SkippableTheory]
    [MemberData(nameof(Cases))]
    public void Renders_as_the_reference_does(int index)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Directory, Reference)));
        var c = doc.RootElement.GetProperty("cases")[index];
        string file = c.GetProperty("template").GetString()!;
        var template = ChatTemplate.Parse(TemplateSource(file));
        var conversation = doc.RootElement.GetProperty("conversations").GetProperty(c.GetProperty("conversation").GetString()!);
        string Token(string name, string fallback) => c.TryGetProperty(name, out var token) ? token.GetString()! : fallback;
        var variables = new Dictionary<string, object?>
        {
            ["messages"] = conversation,
            ["add_generation_prompt"] = c.GetProperty("add_generation_prompt").GetBoolean(),
            ["bos_token"] = Token("bos_token", "<s>"),
            ["eos_token"] = Token("eos_token", "</s>"),
        };
        if (c.GetProperty("tools").ValueKind != JsonValueKind.Null) variables["tools"] = c.GetProperty("tools");
        string because = $"{file}, {c.GetProperty("conversation").GetString()}, generation prompt {c.GetProperty("add_generation_prompt").GetBoolean()}";
        if (c.TryGetProperty("error", out var error))
        {
            var act = () => template.Render(variables);
            act.Should().Throw<ChatTemplateException>(because).Where(e => e.RaisedByTemplate).WithMessage(error.GetString()!);
        }
        else
            template.Render(variables).Should().Be(c.GetProperty("output").GetString(), because);
    }

    /// <summary>A template file beside the references, or (tokenizers/NAME) the chat_template of a fetched tokenizer_config.json.</summary>
    private static string TemplateSource(string file)
    {
        if (!file.StartsWith("tokenizers/", StringComparison.Ordinal)) return File.ReadAllText(Path.Combine(Directory, file));
        string config = Path.Combine(Fixtures.Root, file, "tokenizer_config.json");
        Skip.IfNot(File.Exists(config), $"{file} was not fetched: the test build fetches it when npm is on the PATH (tools/fetch_tokenizer_fixtures.sh)");
        using var doc = JsonDocument.Parse(File.ReadAllText(config));
        return doc.RootElement.GetProperty("chat_template").GetString()!;
    }

    public static TheoryData<int> Snippets()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Directory, Reference)));
        var data = new TheoryData<int>();
        for (int i = 0; i < doc.RootElement.GetProperty("snippets").GetArrayLength(); i++) data.Add(i);
        return data;
    }

    /// <summary>The snippets of <see cref="Follows_python_jinja2"/> as transformers' jinja2 rendered them.</summary>
    [Theory]
    [MemberData(nameof(Snippets))]
    public void Renders_each_snippet_as_python_jinja2_did(int index)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Directory, Reference)));
        var snippet = doc.RootElement.GetProperty("snippets")[index];
        string source = snippet.GetProperty("source").GetString()!;
        ChatTemplate.Parse(source).Render(new Dictionary<string, object?>()).Should().Be(snippet.GetProperty("output").GetString(), source);
    }

    [Theory]
    [InlineData("{{ true }} {{ false }} {{ none }}", "True False None")]
    [InlineData("{{ [1, 2.5, none, true, 'a'] }}", "[1, 2.5, None, True, 'a']")]
    [InlineData("{{ {'k': \"it's\"} }}", "{'k': \"it's\"}")]
    [InlineData("{{ 7 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 4 / 2 }}", "3.5 3 -4 2 1024 2.0")]
    [InlineData("{{ 'ab' * 3 }}|{{ '  x  ' | trim }}|{{ 'a,b,,c'.split(',') | length }}|{{ ' a  b '.split() | join('+') }}", "ababab|x|4|a+b")]
    [InlineData("{{ undefined_name }}|{{ undefined_name is defined }}|{{ undefined_name | default('d') }}", "|False|d")]
    [InlineData("{% set x = 1 %}{% for i in [1, 2] %}{% set x = x + i %}{% endfor %}{{ x }}", "1")]          // a set in a loop stays in it
    [InlineData("{% set ns = namespace(x=1) %}{% for i in [1, 2] %}{% set ns.x = ns.x + i %}{% endfor %}{{ ns.x }}", "4")]
    [InlineData("{% for i in range(10) %}{% if i == 3 %}{% break %}{% endif %}{% if i == 1 %}{% continue %}{% endif %}{{ i }}{% endfor %}", "02")]
    [InlineData("{{ '{\"a\": 1}' }}|{{ {'é': [1, {'n': none}]} | tojson }}", "{\"a\": 1}|{\"é\": [1, {\"n\": null}]}")]
    [InlineData("{% macro f(a, b='B') %}{{ a }}{{ b }}{% endmacro %}{{ f('x') }}{{ f('y', b='z') }}", "xByz")]
    [InlineData("{% set s %}in {{ 1 + 1 }} {% endset %}[{{ s }}]", "[in 2 ]")]
    [InlineData("{{ 'hello'[1:4] }} {{ [1, 2, 3][-1] }} {{ 'abc' | upper | lower }} {{ 'x' if false }}", "ell 3 abc ")]
    [InlineData("{{ '  Mixed Case' | capitalize }}|{{ 'hello world' | capitalize }}", "  mixed case|Hello world")]   // str.capitalize
    [InlineData("{{ \"1st they're x-ray (ok)\" | title }}|{{ \"1st they're x-ray\".title() }}", "1st They're X-Ray (Ok)|1St They'Re X-Ray")] // filter vs str.title
    [InlineData("{{ '🤗ab'[0] }}{{ '🤗ab' | length }}{{ '🤗ab'[::-1] }}", "🤗3ba🤗")]                                       // code points
    public void Follows_python_jinja2(string source, string expected)
        => ChatTemplate.Parse(source).Render(new Dictionary<string, object?>()).Should().Be(expected);

    [Theory]
    [InlineData("{% if x %}never closed", "endif")]
    [InlineData("{{ 1 + }}", "expression is missing")]
    [InlineData("{% for x in y %}{% endif %}", "endfor")]
    [InlineData("{% frobnicate %}", "unknown statement 'frobnicate'")]
    [InlineData("{{ 'unclosed }}", "never closed")]
    public void A_broken_template_fails_to_parse_with_the_line_and_what_is_wrong(string source, string message)
    {
        var act = () => ChatTemplate.Parse(source);
        act.Should().Throw<ChatTemplateException>().WithMessage($"*{message}*");
    }

    [Theory]
    [InlineData("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "MaxRenderDepth")]
    [InlineData("{% for i in range(5000) %}{% for j in range(5000) %}{% endfor %}{% endfor %}", "loop iterations")]
    [InlineData("{{ 'x' * 100000000 }}", "MaxStringChars")]
    [InlineData("{{ range(1000000000) | length }}", "MaxItems")]
    [InlineData("{{ messages.append(1) }}", "may not")]
    [InlineData("{{ nothing.attribute }}", "'nothing' is undefined")]
    public void A_hostile_template_ends_in_an_error_not_a_hang(string source, string message)
    {
        var template = ChatTemplate.Parse(source);
        var act = () => template.Render([("user", "hi")]);
        act.Should().Throw<ChatTemplateException>().WithMessage($"*{message}*");
    }

    [Fact]
    public void Raise_exception_carries_the_templates_own_message()
    {
        var template = ChatTemplate.Parse("{% if messages[0].role != 'system' %}{{ raise_exception('System first, please.') }}{% endif %}");
        var act = () => template.Render([("user", "hi")]);
        act.Should().Throw<ChatTemplateException>().Where(e => e.RaisedByTemplate).WithMessage("System first, please.");
    }
}
