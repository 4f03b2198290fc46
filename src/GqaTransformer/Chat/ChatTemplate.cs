namespace GqaTransformer;

/// <summary>
/// A model's Jinja chat template (<c>chat_template</c> in <c>tokenizer_config.json</c>, or <c>chat_template.jinja</c>),
/// rendered as transformers' <c>apply_chat_template</c> renders it: the same Jinja subset real templates use, with
/// <c>trim_blocks</c> and <c>lstrip_blocks</c> on, <c>raise_exception</c>, <c>namespace()</c>, loop controls and Python's
/// string methods; <c>tojson</c> writes as Python's <c>json.dumps</c>. Parsed once; rendering is thread-safe.
/// </summary>
public sealed class ChatTemplate
{
    private readonly IReadOnlyList<JinjaNode> _nodes;

    private ChatTemplate(string source, IReadOnlyList<JinjaNode> nodes)
    {
        Source = source;
        _nodes = nodes;
    }

    /// <summary>The template's source.</summary>
    public string Source { get; }

    /// <summary>Parses <paramref name="source"/>.</summary>
    /// <exception cref="ChatTemplateException">The template is not valid Jinja, with the line.</exception>
    public static ChatTemplate Parse(string source)
    {
        ArgumentNullException.ThrowIfNull(source);
        return new ChatTemplate(source, JinjaParser.Parse(source));
    }

    /// <summary>
    /// Renders a conversation: <c>messages</c> as a list of {role, content} objects, <c>add_generation_prompt</c>,
    /// <c>bos_token</c> and <c>eos_token</c>, plus any <paramref name="extra"/> variables (tools, documents, a date).
    /// </summary>
    /// <param name="messages">The turns, in order: role ("system", "user", "assistant", ...) and text.</param>
    /// <param name="addGenerationPrompt">Whether to end with the prompt that starts the assistant's reply.</param>
    /// <param name="bosToken">The tokenizer's beginning-of-sequence text, or null.</param>
    /// <param name="eosToken">The tokenizer's end-of-sequence text, or null.</param>
    /// <param name="extra">Further variables; .NET lists, dictionaries, strings, numbers and booleans.</param>
    /// <exception cref="ChatTemplateException">The template raised an error (its own message) or failed to render.</exception>
    public string Render(IEnumerable<(string Role, string Content)> messages, bool addGenerationPrompt = true, string? bosToken = null,
        string? eosToken = null, IReadOnlyDictionary<string, object?>? extra = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var list = messages.Select(m => (object?)new Dictionary<string, object?> { ["role"] = m.Role, ["content"] = m.Content }).ToList();
        var variables = new Dictionary<string, object?>(extra ?? new Dictionary<string, object?>())
        {
            ["messages"] = list,
            ["add_generation_prompt"] = addGenerationPrompt,
        };
        if (bosToken is not null) variables["bos_token"] = bosToken;
        if (eosToken is not null) variables["eos_token"] = eosToken;
        return Render(variables);
    }

    /// <summary>Renders with exactly these variables (.NET lists, dictionaries, strings, numbers, booleans and null).</summary>
    /// <exception cref="ChatTemplateException">The template raised an error (its own message) or failed to render.</exception>
    public string Render(IReadOnlyDictionary<string, object?> variables)
    {
        ArgumentNullException.ThrowIfNull(variables);
        try
        {
            return new JinjaInterpreter(variables).Render(_nodes);
        }
        catch (Exception e) when (e is ArgumentException or InvalidCastException or IndexOutOfRangeException or FormatException or OverflowException)
        {
            throw new ChatTemplateException($"The chat template failed: {e.Message}", e); // a value the template did not expect
        }
    }
}

/// <summary>A chat template that does not parse, or that failed or raised an error while rendering.</summary>
public sealed class ChatTemplateException : Exception
{
    /// <summary>Creates the exception.</summary>
    public ChatTemplateException() : base("The chat template failed.") { }

    /// <summary>Creates the exception with a message.</summary>
    public ChatTemplateException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and a cause.</summary>
    public ChatTemplateException(string message, Exception innerException) : base(message, innerException) { }

    internal ChatTemplateException(string message, bool fromTemplate) : base(message) => RaisedByTemplate = fromTemplate;

    /// <summary>Whether the template itself raised this (<c>raise_exception</c>); the message is then the template's own.</summary>
    public bool RaisedByTemplate { get; }
}
