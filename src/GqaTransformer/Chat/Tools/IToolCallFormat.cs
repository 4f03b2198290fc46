namespace GqaTransformer;

/// <summary>
/// One family's way of writing tool calls in a reply. <see cref="ToolCallFormats"/> lists them and picks one from the
/// chat template's text.
/// </summary>
internal interface IToolCallFormat
{
    /// <summary>A short name for messages and tests ("hermes", "llama3-json", ...).</summary>
    string Name { get; }

    /// <summary>Whether a chat template (its Jinja source) is of this family: it writes this format's markers.</summary>
    bool Matches(string templateSource);

    /// <summary>
    /// Splits a reply into text and calls. Never throws on any text: what does not parse stays text (see
    /// <see cref="ToolCallParseResult.Errors"/>). <paramref name="atReplyStart"/> false: <paramref name="reply"/> is the
    /// rest of a reply whose start was text, so it cannot be a call written as the whole reply (Llama's, Gemma's JSON).
    /// </summary>
    ToolCallParseResult Parse(string reply, bool atReplyStart = true);

    /// <summary>
    /// Streaming: how many leading characters of <paramref name="pending"/> (the reply not yet released; the whole reply
    /// so far when <paramref name="atReplyStart"/>) are text whatever comes next: never part of a call or its marker.
    /// </summary>
    int SafeTextLength(string pending, bool atReplyStart);
}
