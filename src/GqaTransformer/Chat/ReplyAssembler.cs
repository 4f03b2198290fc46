using Microsoft.Extensions.AI;

namespace GqaTransformer;

/// <summary>
/// Turns a reply, piece by piece, into the contents a chat client returns: thoughts as <see cref="TextReasoningContent"/>
/// (<see cref="ThinkingSplitter"/>), and, where tools were offered, the answer's tool calls in the family's format as
/// <see cref="FunctionCallContent"/>s with the text around them (<see cref="ToolCallStreamParser"/>). A call is given out
/// once the reply is complete, never half of one as text.
/// </summary>
internal sealed class ReplyAssembler(ThinkingSplitter splitter, IToolCallFormat? toolCalls)
{
    private readonly ToolCallStreamParser? _calls = toolCalls is null ? null : new ToolCallStreamParser(toolCalls);

    /// <summary>Whether the reply is inside thoughts now.</summary>
    public bool Thinking => splitter.Thinking;

    /// <summary>Whether the completed reply held a tool call.</summary>
    public bool HasCalls { get; private set; }

    /// <summary>The contents the reply's next piece completes.</summary>
    public List<AIContent> Push(string text) => Answer(splitter.Push(text));

    /// <summary>The rest, at the reply's end: what was held back, and the tool calls.</summary>
    public List<AIContent> Finish()
    {
        var contents = Answer(splitter.Flush());
        if (_calls is null) return contents;
        var parsed = _calls.Complete();
        HasCalls = parsed.Calls.Count > 0;
        contents.AddRange(parsed.Contents.Where(c => c is not TextContent { Text.Length: 0 }));
        return contents;
    }

    /// <summary>The answer's text through the tool-call parser, which holds back whatever may be a call.</summary>
    private List<AIContent> Answer(List<AIContent> contents)
    {
        if (_calls is null) return contents;
        var passed = new List<AIContent>(contents.Count);
        foreach (var content in contents)
            if (content is TextContent text)
            {
                if (_calls.Append(text.Text) is { Length: > 0 } released) passed.Add(new TextContent(released));
            }
            else passed.Add(content);
        return passed;
    }
}
