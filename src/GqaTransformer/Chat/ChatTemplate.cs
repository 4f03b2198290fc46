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
    private readonly (string Source, IReadOnlyList<JinjaNode> Nodes)? _toolUse;

    private ChatTemplate(string source, IReadOnlyList<JinjaNode> nodes, (string, IReadOnlyList<JinjaNode>)? toolUse = null)
    {
        Source = source;
        _nodes = nodes;
        _toolUse = toolUse;
    }

    /// <summary>What <c>strftime_now</c> reads; tests fix it to compare with a reference rendered at a known time.</summary>
    internal Func<DateTime> Clock { get; set; } = () => DateTime.Now;

    /// <summary>The template's source.</summary>
    public string Source { get; }

    /// <summary>The text <c>bos_token</c> renders as when a render does not give one (from <c>tokenizer_config.json</c>).</summary>
    public string? BosToken { get; init; }

    /// <summary>The text <c>eos_token</c> renders as when a render does not give one.</summary>
    public string? EosToken { get; init; }

    /// <summary>
    /// Reads a model directory's template: <c>chat_template.jinja</c> (transformers 5), else <c>chat_template</c> in
    /// <c>tokenizer_config.json</c> (a string, or a list of named templates: "default", and "tool_use", which renders
    /// instead when tools are given, as transformers chooses), with that file's <c>bos_token</c> and <c>eos_token</c>.
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
        string? source = jinja, toolUse = null;
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
                {
                    source = t.ValueKind == System.Text.Json.JsonValueKind.String ? t.GetString() : Named(t, "default");
                    toolUse = Named(t, "tool_use");
                }
            }
            catch (Exception e) when (e is System.Text.Json.JsonException or InvalidOperationException or KeyNotFoundException)
            {
                throw new InvalidDataException($"'{configPath}' is not a valid tokenizer_config.json: {e.Message}", e);
            }
        }
        if (source is null) throw new InvalidDataException($"'{directory}' has no chat template (chat_template.jinja, or chat_template in tokenizer_config.json).");
        return new ChatTemplate(source, JinjaParser.Parse(source), toolUse is null ? null : (toolUse, JinjaParser.Parse(toolUse)))
            { BosToken = bos, EosToken = eos };

        static string? Named(System.Text.Json.JsonElement list, string name)
            => list.ValueKind != System.Text.Json.JsonValueKind.Array ? null
             : list.EnumerateArray().Where(e => e.TryGetProperty("name", out var n) && n.GetString() == name)
                .Select(e => e.GetProperty("template").GetString()).FirstOrDefault();

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

    /// <summary>
    /// Renders with these variables: .NET lists, dictionaries, strings, numbers, booleans and null, or <c>JsonElement</c>s.
    /// <c>tools</c> and <c>documents</c> are None when not given, as transformers passes them; with tools given, a
    /// config's "tool_use" template renders instead of its default.
    /// </summary>
    /// <exception cref="ChatTemplateException">The template raised an error (its own message) or failed to render.</exception>
    public string Render(IReadOnlyDictionary<string, object?> variables)
    {
        ArgumentNullException.ThrowIfNull(variables);
        var all = new Dictionary<string, object?>(variables);
        all.TryAdd("tools", null);
        all.TryAdd("documents", null);
        try
        {
            return new JinjaInterpreter(all, Clock).Render(UsesToolTemplate(all) ? _toolUse!.Value.Nodes : _nodes);
        }
        catch (Exception e) when (e is ArgumentException or InvalidCastException or IndexOutOfRangeException or FormatException or OverflowException
                                   or InvalidOperationException or KeyNotFoundException)
        {
            throw new ChatTemplateException($"The chat template failed: {e.Message}", e); // a value the template did not expect
        }
    }

    /// <summary>The source that renders these variables: the "tool_use" template when tools are given and there is one.</summary>
    internal string SourceFor(IReadOnlyDictionary<string, object?> variables) => UsesToolTemplate(variables) ? _toolUse!.Value.Source : Source;

    private bool UsesToolTemplate(IReadOnlyDictionary<string, object?> variables)
        => _toolUse is not null && variables.TryGetValue("tools", out var tools) && tools is not null
           && !(tools is System.Text.Json.JsonElement { ValueKind: System.Text.Json.JsonValueKind.Null });
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
