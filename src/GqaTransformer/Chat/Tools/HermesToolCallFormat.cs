namespace GqaTransformer;

/// <summary>
/// Qwen2.5, Qwen3, QwQ, Hermes 2/3 and Granite 4: each call a JSON object <c>{"name": ..., "arguments": {...}}</c>
/// between <c>&lt;tool_call&gt;</c> and <c>&lt;/tool_call&gt;</c> lines, several in a row, text before them.
/// </summary>
internal sealed class HermesToolCallFormat : IToolCallFormat
{
    private static readonly TaggedToolCalls Tags = new("<tool_call>", "</tool_call>");

    public string Name => "hermes";

    // Qwen3-Coder, Nemotron 3 and GLM also write <tool_call>, around XML parameters rather than JSON: not this format.
    public bool Matches(string templateSource) =>
        templateSource.Contains("<tool_call>", StringComparison.Ordinal)
        && !templateSource.Contains("<function=", StringComparison.Ordinal)
        && !templateSource.Contains("<arg_key>", StringComparison.Ordinal);

    public ToolCallParseResult Parse(string reply, bool atReplyStart = true)
    {
        var builder = new ToolCallResultBuilder();
        Tags.Parse(reply, 0, builder);
        return builder.Build();
    }

    public int SafeTextLength(string pending, bool atReplyStart) => ToolCallMarkers.SafeTextLength(pending, [Tags.Open]);
}
