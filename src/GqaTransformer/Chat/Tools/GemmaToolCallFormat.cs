namespace GqaTransformer;

/// <summary>
/// Gemma 2 and 3: the templates have no tool syntax (they raise on a system turn or tool role, Gemma 3 folds the system
/// prompt into the first user turn), so the format is the one Google's function-calling guide prompts for: a
/// <c>```tool_code</c> block of Python calls, or the whole reply as a Python list of calls <c>[f(a=1)]</c> or as JSON
/// <c>{"name": ..., "parameters": {...}}</c>.
/// </summary>
internal sealed class GemmaToolCallFormat : IToolCallFormat
{
    private const string Open = "```tool_code", Close = "```";

    public string Name => "gemma";

    public bool Matches(string templateSource) => templateSource.Contains("<start_of_turn>", StringComparison.Ordinal);

    public ToolCallParseResult Parse(string reply, bool atReplyStart = true)
    {
        var builder = new ToolCallResultBuilder();
        string trimmed = reply.Trim();
        if (atReplyStart && (trimmed.StartsWith('{') || trimmed.StartsWith('[')))
        {
            // A reply that is all JSON or all Python calls; anything else that starts so is ordinary text.
            if (ToolCallJson.TryReadWhole(trimmed, out var json, out string jsonError) && ToolCallReader.TryAdd(builder, json, out jsonError))
                return builder.Build();
            if (PythonCallSyntax.TryParse(trimmed, out var listed, out string pythonError))
            {
                foreach (var (name, arguments) in listed) builder.Call(null, name, arguments);
                return builder.Build();
            }
            builder.Malformed(reply, $"the reply is neither JSON calls ({jsonError}) nor Python calls ({pythonError})");
            return builder.Build();
        }
        int pos = 0;
        while (true)
        {
            int open = reply.IndexOf(Open, pos, StringComparison.Ordinal);
            if (open < 0) { builder.Text(reply[pos..]); break; }
            builder.Text(reply[pos..open]);
            int body = open + Open.Length;
            int close = reply.IndexOf(Close, body, StringComparison.Ordinal);
            if (close < 0) { builder.Malformed(reply[open..], $"the {Open} block at offset {open} is not closed"); break; }
            if (PythonCallSyntax.TryParse(reply[body..close], out var calls, out string error))
                foreach (var (name, arguments) in calls) builder.Call(null, name, arguments);
            else
                builder.Malformed(reply[open..(close + Close.Length)], $"the {Open} block at offset {open} is not Python calls: {error}");
            pos = close + Close.Length;
        }
        return builder.Build();
    }

    public int SafeTextLength(string pending, bool atReplyStart) =>
        atReplyStart && ToolCallMarkers.MayBeWholeJson(pending) ? 0 : ToolCallMarkers.SafeTextLength(pending, [Open]);
}
