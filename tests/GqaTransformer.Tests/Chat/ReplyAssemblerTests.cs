using FluentAssertions;
using GqaTransformer;
using Microsoft.Extensions.AI;
using Xunit;

namespace GqaTransformer.Tests;

/// <summary>The chat client's reply pipeline: thoughts, then text, then the tool calls of the family's format.</summary>
public class ReplyAssemblerTests
{
    private const string Qwen3Reply =
        "<think>\nThe user wants the weather.\n</think>\n\nLet me look.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 3}}\n</tool_call>";

    [Theory]
    [InlineData(1)]
    [InlineData(4)]
    [InlineData(1000)]
    public void A_qwen3_reply_streamed_in_pieces_gives_reasoning_text_and_one_call(int piece)
    {
        var reply = new ReplyAssembler(new ThinkingSplitter(startsInThinking: false), ToolCallFormats.ByName("hermes"));
        var contents = new List<AIContent>();
        for (int at = 0; at < Qwen3Reply.Length; at += piece)
            contents.AddRange(reply.Push(Qwen3Reply.Substring(at, Math.Min(piece, Qwen3Reply.Length - at))));
        contents.OfType<FunctionCallContent>().Should().BeEmpty("a call comes out once the reply is complete");
        contents.OfType<TextContent>().Any(t => t.Text.Contains("<tool_call>")).Should().BeFalse("never half a call as text");
        contents.AddRange(reply.Finish());
        reply.HasCalls.Should().BeTrue();

        string.Concat(contents.OfType<TextReasoningContent>().Select(r => r.Text)).Should().Be("The user wants the weather.");
        string.Concat(contents.OfType<TextContent>().Select(t => t.Text)).Trim().Should().Be("Let me look.");
        var call = contents.OfType<FunctionCallContent>().Should().ContainSingle().Subject;
        call.Name.Should().Be("get_weather");
        call.Arguments!["city"].Should().Be("Paris");
        Convert.ToInt64(call.Arguments["days"]).Should().Be(3);
        call.CallId.Should().NotBeNullOrEmpty();
    }

    [Fact]
    public void Without_tools_the_call_markup_stays_text()
    {
        var reply = new ReplyAssembler(new ThinkingSplitter(startsInThinking: false), toolCalls: null);
        var contents = reply.Push(Qwen3Reply).Concat(reply.Finish()).ToList();
        contents.OfType<FunctionCallContent>().Should().BeEmpty();
        string.Concat(contents.OfType<TextContent>().Select(t => t.Text)).Should().Contain("<tool_call>");
        reply.HasCalls.Should().BeFalse();
    }
}
