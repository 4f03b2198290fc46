namespace GqaTransformer;

/// <summary>
/// Mistral: <c>[TOOL_CALLS]</c> then a JSON array of <c>{"name", "arguments", "id"}</c> (Nemo, v3 tokenizers), or the
/// newer <c>[TOOL_CALLS]name[ARGS]{...}</c> with an optional <c>[CALL_ID]id</c> before <c>[ARGS]</c> (Small 3.2,
/// Devstral, Ministral 3), repeated for parallel calls. Ids are 9 letters and digits; missing ones are made.
/// </summary>
internal sealed class MistralToolCallFormat : IToolCallFormat
{
    private const string Marker = "[TOOL_CALLS]", Args = "[ARGS]", CallId = "[CALL_ID]";

    public string Name => "mistral";

    public bool Matches(string templateSource) => templateSource.Contains(Marker, StringComparison.Ordinal);

    public ToolCallParseResult Parse(string reply, bool atReplyStart = true)
    {
        var builder = new ToolCallResultBuilder();
        int pos = 0, at;
        while ((at = reply.IndexOf(Marker, pos, StringComparison.Ordinal)) >= 0)
        {
            builder.Text(reply[pos..at]);
            if (!TryCalls(reply, at + Marker.Length, builder, out int end, out string error))
            {
                builder.Malformed(reply[at..], $"the {Marker} at offset {at} is not a call: {error}");
                return builder.Build();
            }
            pos = end;
        }
        builder.Text(reply[pos..]);
        return builder.Build();
    }

    private static bool TryCalls(string reply, int pos, ToolCallResultBuilder builder, out int end, out string error)
    {
        int first = pos;
        while (first < reply.Length && char.IsWhiteSpace(reply[first])) first++;
        if (first < reply.Length && reply[first] == '[')
            return ToolCallJson.TryRead(reply, first, out var list, out end, out error) && ToolCallReader.TryAdd(builder, list, out error);

        end = pos;
        int args = reply.IndexOf(Args, pos, StringComparison.Ordinal);
        if (args < 0) { error = $"no {Args} follows the function name"; return false; }
        string head = reply[pos..args];
        string? id = null;
        int idAt = head.IndexOf(CallId, StringComparison.Ordinal);
        if (idAt >= 0) { id = head[(idAt + CallId.Length)..].Trim(); head = head[..idAt]; }
        string name = head.Trim();
        if (name.Length == 0 || name.Any(c => char.IsWhiteSpace(c) || c is '[' or ']' or '{' or '}'))
        {
            error = $"\"{Shorten(name)}\" is not a function name";
            return false;
        }
        if (!ToolCallJson.TryRead(reply, args + Args.Length, out var value, out end, out error)
            || !ToolCallJson.TryArguments(value, out var arguments, out error, name))
            return false;
        builder.Call(id, name, arguments);
        return true;
    }

    private static string Shorten(string s) => s.Length <= 40 ? s : s[..40] + "...";

    public int SafeTextLength(string pending, bool atReplyStart) => ToolCallMarkers.SafeTextLength(pending, [Marker]);
}
