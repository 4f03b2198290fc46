namespace GqaTransformer;

/// <summary>
/// Llama 3.1-3.3: the whole reply is a JSON call <c>{"name": ..., "parameters": {...}}</c> (or several separated by
/// <c>;</c>), optionally after <c>&lt;|python_tag|&gt;</c>, which may follow some text.
/// </summary>
internal sealed class LlamaToolCallFormat : IToolCallFormat
{
    private const string PythonTag = "<|python_tag|>";

    public string Name => "llama3-json";

    // Functionary 3.1 is built on Llama 3.1's tokens but writes <function=...>: not this format.
    public bool Matches(string templateSource) =>
        templateSource.Contains("<|start_header_id|>", StringComparison.Ordinal)
        && (templateSource.Contains(PythonTag, StringComparison.Ordinal) || templateSource.Contains("\"parameters\": ", StringComparison.Ordinal))
        && !templateSource.Contains("<function=", StringComparison.Ordinal);

    public ToolCallParseResult Parse(string reply, bool atReplyStart = true)
    {
        var builder = new ToolCallResultBuilder();
        int tag = reply.IndexOf(PythonTag, StringComparison.Ordinal);
        if (tag < 0 && !(atReplyStart && ToolCallMarkers.MayBeWholeJson(reply) && reply.Trim().Length > 0))
        {
            builder.Text(reply);
            return builder.Build();
        }
        int start = tag < 0 ? 0 : tag + PythonTag.Length;
        if (tag > 0) builder.Text(reply[..tag]);
        var calls = new ToolCallResultBuilder();
        if (TryCalls(reply, start, calls, out string error))
        {
            foreach (var call in calls.Build().Calls) builder.Call(call.CallId, call.Name, call.Arguments!);
        }
        else builder.Malformed(reply[Math.Max(tag, 0)..], $"the reply from offset {Math.Max(tag, 0)} is not a Llama call: {error}");
        return builder.Build();
    }

    /// <summary>JSON calls separated by ';' up to the end of the reply.</summary>
    private static bool TryCalls(string reply, int pos, ToolCallResultBuilder calls, out string error)
    {
        while (true)
        {
            if (!ToolCallJson.TryRead(reply, pos, out var value, out int end, out error) || !ToolCallReader.TryAdd(calls, value, out error)) return false;
            pos = end;
            while (pos < reply.Length && char.IsWhiteSpace(reply[pos])) pos++;
            if (pos == reply.Length) return true;
            if (reply[pos] != ';') { error = $"expected ';' or the end after a call at offset {pos}"; return false; }
            pos++;
            while (pos < reply.Length && char.IsWhiteSpace(reply[pos])) pos++;
            if (pos == reply.Length) return true;  // a trailing ';'
        }
    }

    public int SafeTextLength(string pending, bool atReplyStart) =>
        atReplyStart && ToolCallMarkers.MayBeWholeJson(pending) ? 0 : ToolCallMarkers.SafeTextLength(pending, [PythonTag]);
}
