namespace GqaTransformer;

/// <summary>
/// Turns a growing list of token ids into text pieces by decoding a short window at each step, as vLLM's incremental
/// detokenizer does: the text of the tokens since the previous piece began, less the text of those already given out.
/// Both decodes start at the same token, so a decoder that treats its first token specially (SentencePiece's leading
/// space) treats both alike. Linear in the reply's length, where decoding the whole reply each step is quadratic. A
/// piece ends on a complete character: a byte sequence split across tokens (U+FFFD at the end) waits for the next one.
/// </summary>
/// <param name="decode">Decodes token ids to text, e.g. <c>ids => tokenizer.Decode(ids)</c>.</param>
public sealed class StreamingDetokenizer(Func<IReadOnlyList<int>, string> decode)
{
    private readonly List<int> _tokens = [];
    private int _start, _given;   // the window starts at _start; tokens before _given have been given out

    /// <summary>The text that <paramref name="token"/> completes (possibly empty).</summary>
    public string Add(int token)
    {
        _tokens.Add(token);
        string given = decode(_tokens.GetRange(_start, _given - _start));
        string all = decode(_tokens.GetRange(_start, _tokens.Count - _start));
        if (all.Length <= given.Length || all.EndsWith('\uFFFD') || !all.StartsWith(given, StringComparison.Ordinal)) return "";
        _start = _given;
        _given = _tokens.Count;
        return all[given.Length..];
    }

    /// <summary>What the tokens not given out yet decode to, at the reply's end (an incomplete character included).</summary>
    public string Rest()
    {
        string given = decode(_tokens.GetRange(_start, _given - _start));
        string all = decode(_tokens.GetRange(_start, _tokens.Count - _start));
        _start = _given = _tokens.Count;
        return all.Length > given.Length && all.StartsWith(given, StringComparison.Ordinal) ? all[given.Length..] : "";
    }
}
