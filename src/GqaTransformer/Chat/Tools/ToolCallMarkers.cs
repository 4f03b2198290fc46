namespace GqaTransformer;

/// <summary>
/// Streaming: how much of the reply so far is surely text. Text stops before the first marker that opens a call, and
/// before a tail that could still become one (<c>&lt;tool_</c> may be the start of <c>&lt;tool_call&gt;</c>); trailing
/// whitespace is held too, since a format's newline before a call is not the answer's.
/// </summary>
internal static class ToolCallMarkers
{
    public static int SafeTextLength(string text, IReadOnlyList<string> markers)
    {
        int safe = text.Length;
        foreach (string marker in markers)
        {
            int at = text.IndexOf(marker, StringComparison.Ordinal);
            if (at >= 0) safe = Math.Min(safe, at);
        }
        if (safe == text.Length)
        {
            foreach (string marker in markers)
                for (int n = Math.Min(marker.Length - 1, text.Length); n > 0; n--)
                    if (text.AsSpan(text.Length - n).SequenceEqual(marker.AsSpan(0, n))) { safe = Math.Min(safe, text.Length - n); break; }
        }
        while (safe > 0 && char.IsWhiteSpace(text[safe - 1])) safe--;
        return safe;
    }

    /// <summary>Whether the reply may still turn out to be a call written as the whole reply (Llama's JSON, Gemma's).</summary>
    public static bool MayBeWholeJson(string text)
    {
        var trimmed = text.AsSpan().TrimStart();
        return trimmed.Length == 0 || trimmed[0] == '{' || trimmed[0] == '[';
    }
}
