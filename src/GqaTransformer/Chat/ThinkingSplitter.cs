using Microsoft.Extensions.AI;

namespace GqaTransformer;

/// <summary>
/// Splits a reply as it streams into what is inside <c>&lt;think&gt;...&lt;/think&gt;</c> (Qwen3, DeepSeek-R1, QwQ),
/// as <see cref="TextReasoningContent"/>, and the rest, as <see cref="TextContent"/>. A tag is never given out half
/// written: text that could still become one is held back until the next piece decides it. The newlines a template
/// writes around the thoughts (<c>&lt;think&gt;\n...\n&lt;/think&gt;\n\n</c>, stripped again when it renders them) are
/// dropped: leading ones of the thoughts and of the answer after them, and trailing ones of the thoughts.
/// </summary>
internal sealed class ThinkingSplitter(bool startsInThinking)
{
    private const string Open = "<think>", Close = "</think>";

    private string _pending = "";          // received, not yet given out: a possible tag or trailing newlines
    private bool _atSegmentStart = startsInThinking;

    /// <summary>Whether the reply is inside thoughts now.</summary>
    public bool Thinking { get; private set; } = startsInThinking;

    /// <summary>The contents <paramref name="text"/> (the reply's next piece) completes.</summary>
    public List<AIContent> Push(string text)
    {
        var contents = new List<AIContent>();
        _pending += text;
        while (true)
        {
            string tag = Thinking ? Close : Open;
            int at = _pending.IndexOf(tag, StringComparison.Ordinal);
            if (at < 0) break;
            Give(contents, Thinking ? _pending[..at].TrimEnd('\n') : _pending[..at]);
            _pending = _pending[(at + tag.Length)..];
            Thinking = !Thinking;
            _atSegmentStart = true;
        }
        int keep = PartialTagLength(_pending, Thinking ? Close : Open);
        int ready = _pending.Length - keep;
        if (Thinking)
            while (ready > 0 && _pending[ready - 1] == '\n') ready--; // newlines before a closing tag are the template's
        Give(contents, _pending[..ready]);
        _pending = _pending[ready..];
        return contents;
    }

    /// <summary>What is held back, at the reply's end: a partial tag is text after all.</summary>
    public List<AIContent> Flush()
    {
        var contents = new List<AIContent>();
        Give(contents, Thinking ? _pending.TrimEnd('\n') : _pending);
        _pending = "";
        return contents;
    }

    private void Give(List<AIContent> contents, string text)
    {
        if (_atSegmentStart)
        {
            text = text.TrimStart('\n');
            if (text.Length == 0) return;   // still at the start: the next piece may bring more newlines
            _atSegmentStart = false;
        }
        if (text.Length > 0) contents.Add(Thinking ? new TextReasoningContent(text) : new TextContent(text));
    }

    /// <summary>The length of the longest end of <paramref name="text"/> that begins <paramref name="tag"/>.</summary>
    private static int PartialTagLength(string text, string tag)
    {
        for (int k = Math.Min(tag.Length - 1, text.Length); k > 0; k--)
            if (string.CompareOrdinal(text, text.Length - k, tag, 0, k) == 0) return k;
        return 0;
    }
}
