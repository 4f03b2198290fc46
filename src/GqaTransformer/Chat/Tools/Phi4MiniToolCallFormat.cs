namespace GqaTransformer;

/// <summary>
/// Phi-4-mini: its template lists the tools between <c>&lt;|tool|&gt;</c> and <c>&lt;|/tool|&gt;</c> in the system turn;
/// the model answers with a JSON list of <c>{"name", "arguments"}</c> between <c>&lt;|tool_call|&gt;</c> and
/// <c>&lt;|/tool_call|&gt;</c>, or after the <c>functools</c> prefix its function-calling prompt asks for
/// (<c>functools[{...}, ...]</c>, no closing marker: what vLLM's and SGLang's Phi-4-mini parsers read).
/// </summary>
internal sealed class Phi4MiniToolCallFormat : IToolCallFormat
{
    private const string Functools = "functools[";
    private static readonly TaggedToolCalls Tags = new("<|tool_call|>", "<|/tool_call|>");

    public string Name => "phi4-mini";

    public bool Matches(string templateSource) =>
        (templateSource.Contains("<|tool|>", StringComparison.Ordinal) && templateSource.Contains("<|/tool|>", StringComparison.Ordinal))
        || templateSource.Contains(Tags.Open, StringComparison.Ordinal);

    public ToolCallParseResult Parse(string reply, bool atReplyStart = true)
    {
        var builder = new ToolCallResultBuilder();
        int functools = reply.IndexOf(Functools, StringComparison.Ordinal);
        int tagged = reply.IndexOf(Tags.Open, StringComparison.Ordinal);
        if (functools >= 0 && (tagged < 0 || functools < tagged))
        {
            builder.Text(reply[..functools]);
            int list = functools + Functools.Length - 1;  // the '[' that opens the JSON list
            if (ToolCallJson.TryRead(reply, list, out var value, out int end, out string error) && ToolCallReader.TryAdd(builder, value, out error))
                Tags.Parse(reply, end, builder);
            else
                builder.Malformed(reply[functools..], $"the functools list at offset {functools} is not a list of calls: {error}");
        }
        else Tags.Parse(reply, 0, builder);
        return builder.Build();
    }

    public int SafeTextLength(string pending, bool atReplyStart) => ToolCallMarkers.SafeTextLength(pending, [Tags.Open, Functools]);
}
