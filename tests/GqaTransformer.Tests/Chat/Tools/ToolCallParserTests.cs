using System.Text.Json;
using FluentAssertions;
using GqaTransformer;
using Microsoft.Extensions.AI;
using Xunit;

namespace GqaTransformer.Tests;

/// <summary>
/// Tool-call parsing against transformers' renders of real templates (ToolCallRealRenders): each family's assistant
/// turn parses back to exactly the names, arguments (and Mistral ids) of the reference conversation, the text around
/// the calls is the message's content, and streaming the same turn in small pieces gives the same result without ever
/// releasing part of a call as text. The template's own source picks the format.
/// </summary>
public class ToolCallParserTests
{
    public static TheoryData<string> RealCases()
    {
        var data = new TheoryData<string>();
        foreach (var c in ToolCallRealRenders.Cases) data.Add(c.ToString());
        return data;
    }

    private static ToolCallRealRenders.Case CaseOf(string name) => ToolCallRealRenders.Cases.Single(c => c.ToString() == name);

    [Fact]
    public void Every_registered_format_is_checked_against_real_renders_or_says_why_not()
    {
        var registered = ToolCallFormats.All.Select(f => f.Name).ToList();
        registered.Should().OnlyHaveUniqueItems();
        var checkedReal = ToolCallRealRenders.Cases.Select(c => c.Format).Distinct().ToList();
        foreach (string name in registered)
            (checkedReal.Contains(name) || ToolCallRealRenders.NoRealRender.ContainsKey(name)).Should().BeTrue($"{name} is neither checked against a real render nor says why it cannot be");
        checkedReal.Concat(ToolCallRealRenders.NoRealRender.Keys).Should().BeSubsetOf(registered, "every format a test names is registered");
        checkedReal.Intersect(ToolCallRealRenders.NoRealRender.Keys).Should().BeEmpty("a format with real renders needs no excuse");
    }

    [Theory]
    [MemberData(nameof(RealCases))]
    public void Parses_the_calls_of_a_real_render(string name)
    {
        var c = CaseOf(name);
        string segment = ToolCallRealRenders.Segment(c);
        var result = ToolCallFormats.ByName(c.Format).Parse(segment);
        AssertMatchesConversation(c, segment, result);
    }

    [Theory]
    [MemberData(nameof(RealCases))]
    public void Streams_the_calls_of_a_real_render_without_releasing_any_part_of_them(string name)
    {
        var c = CaseOf(name);
        string segment = ToolCallRealRenders.Segment(c);
        var format = ToolCallFormats.ByName(c.Format);
        foreach (int piece in new[] { 1, 3, 7 })
        {
            var stream = new ToolCallStreamParser(format);
            string released = "";
            for (int i = 0; i < segment.Length; i += piece)
            {
                released += stream.Append(segment.Substring(i, Math.Min(piece, segment.Length - i)));
                (released + stream.Held).Should().Be(segment[..Math.Min(i + piece, segment.Length)], "nothing is lost or repeated");
            }
            var rest = stream.Complete();
            released.Should().NotContain("{\"", "no part of a call is released as text");
            var whole = new ToolCallParseResult([new TextContent(released), .. rest.Contents], rest.Errors);
            AssertMatchesConversation(c, segment, whole);
        }
    }

    [SkippableTheory]
    [MemberData(nameof(RealCases))]
    public void The_template_picks_its_format(string name)
    {
        var c = CaseOf(name);
        string? source = ToolCallRealRenders.TemplateSource(c.Template);
        Skip.If(source is null, $"{c.Template} was not fetched (tools/fetch_template_fixtures.sh; manifest.json's source says where it is)");
        ToolCallFormats.Detect(source!)?.Name.Should().Be(c.Format);
        ToolCallFormats.Detect(source!).Should().NotBeNull($"{c.Template} writes {c.Format} calls");
    }

    [Theory]
    [InlineData("llama.cpp/Qwen3-Coder")]          // <tool_call> around <function=...> XML
    [InlineData("llama.cpp/GLM-4.6")]              // <tool_call> around <arg_key> pairs
    [InlineData("llama.cpp/meetkai-functionary-medium-v3.1")]  // Llama 3.1 tokens, <function=...> calls
    [InlineData("llama.cpp/openai-gpt-oss-120b")]
    [InlineData("llama.cpp/deepseek-ai-DeepSeek-V3.1")]
    public void A_template_of_another_format_is_not_taken_for_one_we_read(string id)
    {
        string source = ToolCallRealRenders.TemplateSource(id)!;
        source.Should().NotBeNull($"{id} is committed");
        ToolCallFormats.Detect(source).Should().BeNull($"{id} writes calls in none of our formats");
    }

    private static void AssertMatchesConversation(ToolCallRealRenders.Case c, string segment, ToolCallParseResult result)
    {
        var message = ToolCallRealRenders.AssistantWithCalls(c.Conversation);
        var expected = message.GetProperty("tool_calls").EnumerateArray().ToList();
        result.Errors.Should().BeEmpty($"{c}: {segment}");
        result.Calls.Should().HaveCount(expected.Count, $"{c}: {segment}");
        string content = message.GetProperty("content").ValueKind == JsonValueKind.String ? message.GetProperty("content").GetString()! : "";
        if (!segment.Contains(content, StringComparison.Ordinal)) content = "";  // Hermes 3's template drops the content beside calls
        result.Text.Should().Be(content, $"{c}: the text around the calls is the message's content");
        for (int i = 0; i < expected.Count; i++)
        {
            var call = result.Calls[i];
            var function = expected[i].GetProperty("function");
            call.Name.Should().Be(function.GetProperty("name").GetString());
            var args = function.GetProperty("arguments");
            if (args.ValueKind == JsonValueKind.String) args = JsonDocument.Parse(args.GetString()!).RootElement;  // string arguments parse to their object
            ToolCallAssert.SameAs(call.Arguments, args, $"{c} call {i} arguments");
            string id = expected[i].GetProperty("id").GetString()!;
            if (segment.Contains(id, StringComparison.Ordinal)) call.CallId.Should().Be(id, "an id the model wrote is kept");
            else if (c.Format == "mistral") ToolCallIds.IsMistralId(call.CallId).Should().BeTrue($"a made id is 9 letters and digits, not {call.CallId}");
            else call.CallId.Should().NotBeNullOrEmpty();
        }
    }
}
