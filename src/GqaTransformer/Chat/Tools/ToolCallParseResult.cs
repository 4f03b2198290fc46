using Microsoft.Extensions.AI;

namespace GqaTransformer;

/// <summary>
/// A model's reply split into its tool calls and the text around them. <see cref="Contents"/> keeps the reply's order
/// (<see cref="TextContent"/> and <see cref="FunctionCallContent"/>); <see cref="Errors"/> says why a span that began
/// like a call was kept as text (an unclosed tag, JSON that does not parse, arguments that are not an object).
/// </summary>
internal sealed class ToolCallParseResult
{
    internal ToolCallParseResult(IReadOnlyList<AIContent> contents, IReadOnlyList<string> errors)
    {
        Contents = contents;
        Errors = errors;
        Calls = contents.OfType<FunctionCallContent>().ToList();
        Text = string.Concat(contents.OfType<TextContent>().Select(t => t.Text));
    }

    /// <summary>The text and the calls, in the order the model wrote them.</summary>
    public IReadOnlyList<AIContent> Contents { get; }

    /// <summary>The calls alone, in order.</summary>
    public IReadOnlyList<FunctionCallContent> Calls { get; }

    /// <summary>The text around the calls, joined.</summary>
    public string Text { get; }

    /// <summary>Why spans that looked like calls were kept as text; empty when none were.</summary>
    public IReadOnlyList<string> Errors { get; }
}
