using FluentAssertions;
using GqaTransformer;
using Microsoft.Extensions.AI;
using Xunit;

namespace GqaTransformer.Tests;

/// <summary>
/// A reply split into thoughts and answer the same way however it streams in: whole, in two pieces at every point,
/// and a character at a time; never half a tag given out as text.
/// </summary>
public class ThinkingSplitterTests
{
    public static TheoryData<string, bool, string, string> Replies() => new()
    {
        { "<think>\nLet me see.\n</think>\n\nYes.", false, "Let me see.", "Yes." },               // Qwen3, thinking on
        { "Okay, so\n\nfirst.\n</think>\n\nNo.", true, "Okay, so\n\nfirst.", "No." },           // DeepSeek-R1: the prompt opened <think>
        { "<think>\n\n</think>\n\nHi <b>there</b>\n", false, "", "Hi <b>there</b>\n" },          // an empty think block
        { "Plain answer, a < b, ends <thin", false, "", "Plain answer, a < b, ends <thin" },      // a partial tag at the end is text
        { "Unfinished thought\n\n", true, "Unfinished thought", "" },                           // cut off while thinking
        { "\nNo thoughts at all.", false, "", "\nNo thoughts at all." },                        // text untouched when nothing is thought
    };

    private static (string Reasoning, string Text, List<AIContent> Contents) Split(IEnumerable<string> pieces, bool startsInThinking)
    {
        var splitter = new ThinkingSplitter(startsInThinking);
        var contents = pieces.SelectMany(splitter.Push).ToList();
        contents.AddRange(splitter.Flush());
        return (string.Concat(contents.OfType<TextReasoningContent>().Select(c => c.Text)),
                string.Concat(contents.OfType<TextContent>().Select(c => c.Text)), contents);
    }

    [Theory]
    [MemberData(nameof(Replies))]
    public void Thoughts_and_answer_are_the_same_however_the_reply_streams(string reply, bool startsInThinking, string reasoning, string text)
    {
        Split([reply], startsInThinking).Should().Match<(string Reasoning, string Text, List<AIContent>)>(r => r.Reasoning == reasoning && r.Text == text);
        for (int at = 0; at <= reply.Length; at++)
        {
            var (r, t, _) = Split([reply[..at], reply[at..]], startsInThinking);
            (r, t).Should().Be((reasoning, text), $"split at {at}");
        }
        var (charReasoning, charText, contents) = Split(reply.Select(c => c.ToString()), startsInThinking);
        (charReasoning, charText).Should().Be((reasoning, text), "a character at a time");
        contents.Should().NotContain(c => c is TextContent && ((TextContent)c).Text.Contains("think>"), "a tag is never given out as text");
        contents.Should().NotContain(c => c.ToString()!.Length == 0, "no empty pieces");
    }

    [Fact]
    public void A_tag_split_across_pieces_is_held_back_until_decided()
    {
        var splitter = new ThinkingSplitter(false);
        splitter.Push("<th").Should().BeEmpty("it may become <think>");
        splitter.Push("ink>\nhm").Should().ContainSingle().Which.Should().BeOfType<TextReasoningContent>().Which.Text.Should().Be("hm");
        splitter.Thinking.Should().BeTrue();
        splitter.Push("\n</thi").Should().BeEmpty("a newline and a partial closing tag may be the template's");
        splitter.Push("nk>\n\nok").Should().ContainSingle().Which.Should().BeOfType<TextContent>().Which.Text.Should().Be("ok");
        splitter.Thinking.Should().BeFalse();
    }
}
