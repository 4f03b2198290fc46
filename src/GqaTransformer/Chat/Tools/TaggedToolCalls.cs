namespace GqaTransformer;

/// <summary>Calls written as JSON between an opening and a closing tag (Hermes' <c>&lt;tool_call&gt;</c>, Phi-4-mini's <c>&lt;|tool_call|&gt;</c>).</summary>
internal sealed class TaggedToolCalls(string open, string close)
{
    public string Open { get; } = open;
    public string Close { get; } = close;

    /// <summary>Adds the text and calls of <paramref name="reply"/> from <paramref name="start"/> to the builder.</summary>
    public void Parse(string reply, int start, ToolCallResultBuilder builder)
    {
        int pos = start;
        while (true)
        {
            int open = reply.IndexOf(Open, pos, StringComparison.Ordinal);
            if (open < 0) { builder.Text(reply[pos..]); return; }
            builder.Text(reply[pos..open]);
            int body = open + Open.Length;
            int close = reply.IndexOf(Close, body, StringComparison.Ordinal);
            if (close < 0)
            {
                builder.Malformed(reply[open..], $"the {Open} at offset {open} is not closed by {Close}");
                return;
            }
            int end = close + Close.Length;
            if (!ToolCallJson.TryReadWhole(reply[body..close], out var value, out string error) || !ToolCallReader.TryAdd(builder, value, out error))
                builder.Malformed(reply[open..end], $"the {Open} at offset {open} is not a call: {error}");
            pos = end;
        }
    }
}
