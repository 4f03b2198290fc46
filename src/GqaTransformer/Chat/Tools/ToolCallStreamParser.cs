using Microsoft.Extensions.AI;

namespace GqaTransformer;

/// <summary>
/// A reply as it streams: <see cref="Append"/> returns the text that is surely text (never part of a call marker or
/// call); from the first possible call on, the rest is held and <see cref="Complete"/> parses it into calls and the
/// text after them. The text released plus the held part is always the reply, so nothing is lost or repeated. Only the
/// unreleased tail is scanned at each step (a call's length, not the reply's).
/// </summary>
internal sealed class ToolCallStreamParser(IToolCallFormat format)
{
    private readonly System.Text.StringBuilder _held = new();
    private bool _completed, _released;

    /// <summary>Adds a piece of the reply; returns the text that can be shown now (possibly empty).</summary>
    public string Append(string delta)
    {
        ArgumentNullException.ThrowIfNull(delta);
        if (_completed) throw new InvalidOperationException("the reply was completed; start a new parser for the next one");
        _held.Append(delta);
        string held = _held.ToString();
        int safe = format.SafeTextLength(held, atReplyStart: !_released);
        if (safe == 0) return "";
        _released = true;
        _held.Remove(0, safe);
        return held[..safe];
    }

    /// <summary>The end of the reply: the held part as text and calls.</summary>
    public ToolCallParseResult Complete()
    {
        _completed = true;
        return format.Parse(_held.ToString(), atReplyStart: !_released);
    }

    /// <summary>What <see cref="Complete"/> would see now.</summary>
    public string Held => _held.ToString();
}
