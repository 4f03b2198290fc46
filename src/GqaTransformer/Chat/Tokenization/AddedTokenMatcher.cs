namespace GqaTransformer;

/// <summary>
/// Finds a tokenizer's added tokens in a text as HF's AddedVocabulary does: leftmost first, the longest at that place,
/// never overlapping, through a trie of their contents; a token marked <c>lstrip</c> or <c>rstrip</c> also takes the
/// whitespace on that side. A trie, not one regex of alternatives: Gemma 3 has 6415 added tokens, and such a regex
/// spent about a quarter of a second per match in a text of newlines.
/// </summary>
internal sealed class AddedTokenMatcher<T> where T : class
{
    private sealed class Node
    {
        public Dictionary<char, Node>? Next;
        public (T Value, bool LStrip, bool RStrip)? Entry;
    }

    /// <summary>
    /// The longest content accepted: a search walks the trie from each place at most this far, so a hostile file's
    /// megabyte-long token cannot make encoding quadratic. Real added tokens are tens of characters.
    /// </summary>
    public const int MaxContentLength = 1024;

    private readonly Node _root = new();

    public bool IsEmpty => _root.Next is null;

    /// <summary>Adds a token; a second one with the same content replaces the first.</summary>
    /// <exception cref="InvalidDataException">The content is empty or longer than <see cref="MaxContentLength"/>.</exception>
    public void Add(string content, T value, bool lstrip, bool rstrip)
    {
        if (content.Length is 0 or > MaxContentLength)
            throw new InvalidDataException($"tokenizer.json has an added token of {content.Length} characters; 1 to {MaxContentLength} are accepted.");
        var node = _root;
        foreach (char c in content)
        {
            node.Next ??= [];
            if (!node.Next.TryGetValue(c, out var child)) node.Next[c] = child = new Node();
            node = child;
        }
        node.Entry = (value, lstrip, rstrip);
    }

    /// <summary>
    /// The matches in <paramref name="text"/>, in order: where each starts, where it ends, and its token. As in HF, the
    /// search goes on after a token's own text, not after the whitespace its rstrip took, so a token found in that
    /// whitespace (a space token) is given too, overlapping it; lstrip never reaches back past the previous match.
    /// </summary>
    public IEnumerable<(int Start, int End, T Value)> Matches(string text)
    {
        int done = 0;    // the end of the previous match, whitespace taken included
        for (int i = 0; i < text.Length;)
        {
            var node = _root;
            (T Value, bool LStrip, bool RStrip)? best = null;
            int bestEnd = 0;
            for (int j = i; j < text.Length && node.Next is not null && node.Next.TryGetValue(text[j], out node); j++)
                if (node.Entry is { } entry) { best = entry; bestEnd = j + 1; }
            if (best is not { } found) { i++; continue; }
            int start = i, end = bestEnd;
            if (found.LStrip)
            {
                while (start > 0 && char.IsWhiteSpace(text[start - 1])) start--;
                start = Math.Max(start, done);
            }
            if (found.RStrip) while (end < text.Length && char.IsWhiteSpace(text[end])) end++;
            yield return (start, end, found.Value);
            done = end;
            i = bestEnd;
        }
    }
}
