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

    /// <summary>The text <c>bos_token</c> renders as when a render does not give one (from <c>tokenizer_config.json</c>).</summary>
    public string? BosToken { get; init; }

    /// <summary>The text <c>eos_token</c> renders as when a render does not give one.</summary>
    public string? EosToken { get; init; }

    /// <summary>
    /// Reads a model directory's template: <c>chat_template.jinja</c> (transformers 5), else <c>chat_template</c> in
    /// <c>tokenizer_config.json</c> (a string, or the "default" of a list), with that file's <c>bos_token</c> and <c>eos_token</c>.
    /// </summary>
    /// <exception cref="InvalidDataException">The directory has no chat template, or tokenizer_config.json is not valid JSON.</exception>
    /// <exception cref="ChatTemplateException">The template does not parse.</exception>
    public static ChatTemplate FromPretrained(string directory)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        string configPath = Path.Combine(directory, "tokenizer_config.json"), jinjaPath = Path.Combine(directory, "chat_template.jinja");
        return FromFiles(File.Exists(configPath) ? File.ReadAllText(configPath) : null, File.Exists(jinjaPath) ? File.ReadAllText(jinjaPath) : null,
            configPath, directory);
    }

    /// <summary>The template of a tokenizer_config.json's text and a chat_template.jinja's (either may be null; the .jinja file wins).</summary>
    internal static ChatTemplate FromFiles(string? configJson, string? jinja, string configPath, string directory)
    {
        string? source = jinja;
        string? bos = null, eos = null;
        if (configJson is not null)
        {
            try
            {
                using var doc = System.Text.Json.JsonDocument.Parse(configJson, new System.Text.Json.JsonDocumentOptions { MaxDepth = 64 });
                var root = doc.RootElement;
                bos = TokenText(root, "bos_token");
                eos = TokenText(root, "eos_token");
                if (source is null && root.TryGetProperty("chat_template", out var t))
                    source = t.ValueKind == System.Text.Json.JsonValueKind.String ? t.GetString()
                        : t.ValueKind == System.Text.Json.JsonValueKind.Array
                            ? t.EnumerateArray().Where(e => e.TryGetProperty("name", out var n) && n.GetString() == "default")
                                .Select(e => e.GetProperty("template").GetString()).FirstOrDefault()
                        : null;
            }
            catch (Exception e) when (e is System.Text.Json.JsonException or InvalidOperationException or KeyNotFoundException)
            {
                throw new InvalidDataException($"'{configPath}' is not a valid tokenizer_config.json: {e.Message}", e);
            }
        }
        if (source is null) throw new InvalidDataException($"'{directory}' has no chat template (chat_template.jinja, or chat_template in tokenizer_config.json).");
        return new ChatTemplate(source, JinjaParser.Parse(source)) { BosToken = bos, EosToken = eos };

        static string? TokenText(System.Text.Json.JsonElement root, string name)
            => !root.TryGetProperty(name, out var v) ? null
             : v.ValueKind == System.Text.Json.JsonValueKind.String ? v.GetString()
             : v.ValueKind == System.Text.Json.JsonValueKind.Object && v.TryGetProperty("content", out var c) ? c.GetString() : null;
    }

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
    /// <param name="bosToken">The tokenizer's beginning-of-sequence text; null takes <see cref="BosToken"/>.</param>
    /// <param name="eosToken">The tokenizer's end-of-sequence text; null takes <see cref="EosToken"/>.</param>
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
        if ((bosToken ?? BosToken) is { } bos) variables["bos_token"] = bos;
        if ((eosToken ?? EosToken) is { } eos) variables["eos_token"] = eos;
        return Render(variables);
    }

    /// <summary>Renders with exactly these variables: .NET lists, dictionaries, strings, numbers, booleans and null, or <c>JsonElement</c>s.</summary>
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
