using Microsoft.Extensions.AI;

namespace GqaTransformer;

/// <summary>
/// Collects a reply's text and calls in order. Whitespace that only separates text from a call (the newline before
/// <c>&lt;tool_call&gt;</c>) is the format's, not the answer's, so it is trimmed on the side that touches a call;
/// a reply without calls comes back exactly as written.
/// </summary>
internal sealed class ToolCallResultBuilder
{
    private readonly List<object> _parts = [];   // string (text) or FunctionCallContent
    private readonly List<string> _errors = [];

    public void Text(string text)
    {
        if (text.Length > 0) _parts.Add(text);
    }

    public void Call(string? id, string name, IDictionary<string, object?> arguments) =>
        _parts.Add(new FunctionCallContent(string.IsNullOrEmpty(id) ? ToolCallIds.New() : id, name, arguments));

    /// <summary>Keeps <paramref name="text"/> as text, saying why it is not a call.</summary>
    public void Malformed(string text, string why)
    {
        Text(text);
        _errors.Add(why);
    }

    public bool HasCalls => _parts.Any(p => p is FunctionCallContent);

    public ToolCallParseResult Build()
    {
        var contents = new List<AIContent>();
        string pending = "";
        for (int i = 0; i < _parts.Count; i++)
        {
            if (_parts[i] is string s) { pending += s; continue; }
            Flush(contents, pending, afterCall: contents.Count > 0 && contents[^1] is FunctionCallContent, beforeCall: true);
            pending = "";
            contents.Add((FunctionCallContent)_parts[i]);
        }
        Flush(contents, pending, afterCall: contents.Count > 0 && contents[^1] is FunctionCallContent, beforeCall: false);
        return new ToolCallParseResult(contents, _errors);
    }

    private static void Flush(List<AIContent> contents, string text, bool afterCall, bool beforeCall)
    {
        if (afterCall) text = text.TrimStart();
        if (beforeCall) text = text.TrimEnd();
        if (text.Length > 0) contents.Add(new TextContent(text));
    }
}
