using System.Runtime.CompilerServices;
using Microsoft.Extensions.AI;
using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>
/// A chat model as a Microsoft.Extensions.AI <see cref="IChatClient"/>: the model's own chat template renders the
/// conversation, its tokenizer encodes it, and generation stops at any of its end-of-turn ids or a stop sequence (whose
/// text is not returned). The client keeps one <see cref="KvCache"/> across requests: when a request's prompt extends
/// the tokens already in it (the next turn of the same chat) only the new tokens are read; when it differs, the cache is
/// rewound to the common prefix, not rebuilt (<c>Usage.AdditionalCounts["CachedInputTokens"]</c> says how many were reused).
/// One request runs at a time; others wait. A cancelled request leaves the client usable. Further template variables
/// (Qwen3's <c>enable_thinking</c>) come in <see cref="ChatOptions.AdditionalProperties"/> under <see cref="ChatTemplateKwargsKey"/>.
/// <para>
/// Tools: the <see cref="AIFunctionDeclaration"/>s of <see cref="ChatOptions.Tools"/> reach the template's <c>tools</c>
/// as transformers' <c>apply_chat_template(tools=...)</c> passes them (<c>{"type": "function", "function": {"name",
/// "description", "parameters"}}</c>), unless <see cref="ChatOptions.ToolMode"/> is <see cref="ChatToolMode.None"/>.
/// In the history, an assistant turn's <see cref="FunctionCallContent"/>s become its <c>tool_calls</c> (<c>{"id",
/// "type": "function", "function": {"name", "arguments"}}</c>, arguments as a dictionary) and each
/// <see cref="FunctionResultContent"/> a <c>tool</c> message with <c>tool_call_id</c>, <c>name</c> and the result as
/// <c>content</c> (a string as it is, anything else as JSON).
/// </para>
/// <para>
/// Reasoning: what the model writes inside <c>&lt;think&gt;...&lt;/think&gt;</c> (Qwen3, QwQ, DeepSeek-R1) comes back as
/// <see cref="TextReasoningContent"/>, the rest as <see cref="TextContent"/>; a reply is inside thoughts from its start
/// when the prompt ends with an open <c>&lt;think&gt;</c> (DeepSeek-R1's templates write one), and a stream never
/// gives out half a tag. <see cref="ChatOptions.Reasoning"/> with <see cref="ReasoningEffort.None"/> sets the template
/// variable <c>enable_thinking</c> to false, which turns thinking off where the template reads it (Qwen3's writes an
/// empty think block instead); any other effort sets it to true; a value under <see cref="ChatTemplateKwargsKey"/>
/// wins. <see cref="ReasoningOutput.None"/> leaves the reasoning out of the response. An assistant turn's
/// <see cref="TextReasoningContent"/> goes back to the template as <c>reasoning_content</c>.
/// </para>
/// </summary>
public sealed class GqaChatClient : IChatClient
{
    /// <summary>The <see cref="UsageDetails.AdditionalCounts"/> key of the prompt tokens taken from the cache.</summary>
    public const string CachedInputTokensKey = "CachedInputTokens";

    /// <summary>
    /// The <see cref="ChatOptions.AdditionalProperties"/> key of further variables for the chat template, as
    /// transformers' <c>apply_chat_template</c> takes them as keyword arguments (and vLLM as <c>chat_template_kwargs</c>):
    /// a dictionary of names to values (.NET strings, numbers, booleans, lists, dictionaries, or a JSON object), e.g.
    /// <c>["chat_template_kwargs"] = new Dictionary&lt;string, object?&gt; { ["enable_thinking"] = false }</c> for Qwen3.
    /// <c>messages</c>, <c>add_generation_prompt</c>, <c>bos_token</c> and <c>eos_token</c> are the client's own and are refused.
    /// </summary>
    public const string ChatTemplateKwargsKey = "chat_template_kwargs";

    private readonly DecoderModel _model;
    private readonly bool _ownsModel;
    private readonly HfTokenizer _tokenizer;
    private readonly ChatTemplate _template;
    private readonly string? _bosToken, _eosToken;
    private readonly GenerationOptions _defaults;
    private readonly KvCache _cache;
    private readonly List<int> _cached = [];            // the token ids whose keys and values the cache holds, in order
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly ChatClientMetadata _metadata;

    /// <summary>A client over components you own (the client disposes only its cache).</summary>
    /// <param name="model">The model.</param>
    /// <param name="tokenizer">Its tokenizer.</param>
    /// <param name="template">Its chat template.</param>
    /// <param name="bosToken">The text the template writes for <c>bos_token</c>, or null.</param>
    /// <param name="eosToken">The text for <c>eos_token</c>, or null.</param>
    /// <param name="defaults">Stop ids and sampling defaults (e.g. from <see cref="GenerationConfig.ToOptions"/>); ChatOptions override them.</param>
    /// <param name="capacity">Most tokens a conversation may hold (the cache is allocated once at this size). Default: the model's maximum, at most 8192.</param>
    public GqaChatClient(DecoderModel model, HfTokenizer tokenizer, ChatTemplate template, string? bosToken = null, string? eosToken = null,
        GenerationOptions? defaults = null, int? capacity = null)
        : this(model, false, tokenizer, template, bosToken, eosToken, defaults, capacity)
    {
    }

    private GqaChatClient(DecoderModel model, bool ownsModel, HfTokenizer tokenizer, ChatTemplate template, string? bosToken, string? eosToken,
        GenerationOptions? defaults, int? capacity)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(template);
        int size = capacity ?? Math.Min(model.Config.MaxPositionEmbeddings, 8192);
        if (size < 2 || size > model.Config.MaxPositionEmbeddings)
            throw new ArgumentOutOfRangeException(nameof(capacity), size, $"capacity must be in [2, {model.Config.MaxPositionEmbeddings}] (max_position_embeddings).");
        _defaults = (defaults ?? new GenerationOptions()).Validate();
        _model = model;
        _tokenizer = tokenizer;
        _template = template;
        _bosToken = bosToken;
        _eosToken = eosToken;
        _cache = model.CreateCache(1, size);
        _ownsModel = ownsModel;
        _metadata = new ChatClientMetadata("GqaTransformer", defaultModelId: model.Config.ModelType);
    }

    /// <summary>
    /// Loads a chat model from a Hugging Face directory: the checkpoint, <c>tokenizer.json</c>, the chat template
    /// (<c>chat_template.jinja</c>, or <c>chat_template</c> in <c>tokenizer_config.json</c>) with its <c>bos_token</c> and
    /// <c>eos_token</c>, and <c>generation_config.json</c>'s stop ids and sampling defaults. The client owns the model.
    /// </summary>
    /// <exception cref="InvalidDataException">The directory has no chat template, or a file is invalid.</exception>
    public static GqaChatClient FromPretrained(string directory, ScalarType? dtype = null, Device? device = null, int? capacity = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        var tokenizer = HfTokenizer.FromFile(Path.Combine(directory, "tokenizer.json"));
        var template = ChatTemplate.FromPretrained(directory);
        var generation = GenerationConfig.FromFile(directory);
        var model = DecoderModel.FromPretrained(directory, dtype ?? ScalarType.Float32, device ?? CPU);
        try
        {
            var defaults = generation?.ToOptions() ?? new GenerationOptions { StopTokenIds = model.Config.EosTokenIds };
            return new GqaChatClient(model, true, tokenizer, template, template.BosToken, template.EosToken, defaults, capacity);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>The tokens the cache holds for the conversation so far.</summary>
    public int CachedTokens => _cached.Count;

    /// <summary>Forgets the cached conversation (waits for a running request); the next request reads its whole prompt.</summary>
    public void Reset()
    {
        _gate.Wait();
        try
        {
            _cache.Reset();
            _cached.Clear();
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <inheritdoc />
    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var contents = new List<AIContent>();
        ChatFinishReason? finish = null;
        UsageDetails? usage = null;
        await foreach (var update in GetStreamingResponseAsync(messages, options, cancellationToken).ConfigureAwait(false))
        {
            foreach (var content in update.Contents)
            {
                // Pieces of the same kind in a row are one content, as the text of a reply that was not streamed.
                switch (content, contents.Count > 0 ? contents[^1] : null)
                {
                    case (UsageContent u, _): usage = u.Details; break;
                    case (TextReasoningContent r, TextReasoningContent last): contents[^1] = new TextReasoningContent(last.Text + r.Text); break;
                    case (TextContent t, TextContent last): contents[^1] = new TextContent(last.Text + t.Text); break;
                    default: contents.Add(content); break;
                }
            }
            finish = update.FinishReason ?? finish;
        }
        return new ChatResponse(new ChatMessage(ChatRole.Assistant, contents)) { FinishReason = finish, Usage = usage, ModelId = _metadata.DefaultModelId };
    }

    /// <inheritdoc />
    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var (prompt, startsInThinking) = Prompt(messages, options);  // checked before anything changes
        var generation = Options(options);
        var stops = options?.StopSequences?.Where(s => !string.IsNullOrEmpty(s)).ToArray() ?? [];
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            // Tool calls are parsed out of the answer where tools were offered and the template names a format we read.
            var calls = options?.Tools is { Count: > 0 } && options.ToolMode is not NoneChatToolMode ? ToolCallFormats.Detect(_template.Source) : null;
            var reply = new ReplyAssembler(new ThinkingSplitter(startsInThinking), calls);
            bool showReasoning = options?.Reasoning?.Output != ReasoningOutput.None;
            using var steps = Run(prompt, generation, stops, reply, showReasoning, cancellationToken).GetEnumerator();
            while (await Task.Run(steps.MoveNext, cancellationToken).ConfigureAwait(false))  // native work off the caller's thread
                yield return steps.Current;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>The prompt's token ids, and whether it leaves the reply inside an open <c>&lt;think&gt;</c>.</summary>
    private (IReadOnlyList<int> Ids, bool StartsInThinking) Prompt(IEnumerable<ChatMessage> messages, ChatOptions? options)
    {
        var variables = Variables(messages, options);
        if (_bosToken is not null) variables["bos_token"] = _bosToken;
        if (_eosToken is not null) variables["eos_token"] = _eosToken;
        string rendered = _template.Render(variables);
        var ids = _tokenizer.Encode(rendered, addSpecialTokens: false);   // the template writes BOS itself, as transformers' apply_chat_template
        if (ids.Count == 0) throw new ArgumentException("The chat template rendered no tokens for these messages.", nameof(messages));
        if (ids.Count >= _cache.Capacity)
            throw new ArgumentException($"The conversation is {ids.Count} tokens; this client holds at most {_cache.Capacity - 1} before a reply. Create it with a larger capacity.", nameof(messages));
        return (ids, rendered.TrimEnd().EndsWith("<think>", StringComparison.Ordinal));
    }

    /// <summary>
    /// What the template renders a request from, but <c>bos_token</c> and <c>eos_token</c>: the messages, the tools, the
    /// variables of <see cref="ChatTemplateKwargsKey"/>, <c>enable_thinking</c> from the reasoning effort, the generation prompt.
    /// </summary>
    internal static Dictionary<string, object?> Variables(IEnumerable<ChatMessage> messages, ChatOptions? options)
    {
        var turns = ChatTemplateInput.Messages(messages);
        if (turns.Count == 0) throw new ArgumentException("At least one message is needed.", nameof(messages));
        var variables = TemplateVariables(options) ?? [];
        if (options?.Reasoning?.Effort is { } effort) variables.TryAdd("enable_thinking", effort != ReasoningEffort.None);
        if (ChatTemplateInput.Tools(options) is { } tools) variables["tools"] = tools;
        variables["messages"] = turns;
        variables["add_generation_prompt"] = true;
        return variables;
    }

    /// <summary>The template variables of <see cref="ChatTemplateKwargsKey"/>, or null when the options have none.</summary>
    private static Dictionary<string, object?>? TemplateVariables(ChatOptions? options)
    {
        if (options?.AdditionalProperties is not { } properties || !properties.TryGetValue(ChatTemplateKwargsKey, out object? value) || value is null)
            return null;
        var variables = value switch
        {
            IEnumerable<KeyValuePair<string, object?>> pairs => pairs.ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal),
            System.Collections.IDictionary dictionary when dictionary.Keys.Cast<object>().All(k => k is string)     // Dictionary<string, bool> and the like
                => dictionary.Keys.Cast<string>().ToDictionary(k => k, k => dictionary[k], StringComparer.Ordinal),
            System.Text.Json.JsonElement { ValueKind: System.Text.Json.JsonValueKind.Object } json
                => json.EnumerateObject().ToDictionary(p => p.Name, p => (object?)p.Value, StringComparer.Ordinal),
            _ => throw new ArgumentException(
                $"ChatOptions.AdditionalProperties[\"{ChatTemplateKwargsKey}\"] is a {value.GetType().Name}; expected a dictionary of variable names to values (or a JSON object).",
                nameof(options)),
        };
        foreach (string own in new[] { "messages", "add_generation_prompt", "bos_token", "eos_token" })
            if (variables.ContainsKey(own))
                throw new ArgumentException($"ChatOptions.AdditionalProperties[\"{ChatTemplateKwargsKey}\"] sets '{own}', which the client sets itself.", nameof(options));
        return variables;
    }

    private GenerationOptions Options(ChatOptions? options)
    {
        var result = _defaults;
        if (options is not null)
        {
            result = result with
            {
                MaxNewTokens = options.MaxOutputTokens ?? result.MaxNewTokens,
                Temperature = options.Temperature ?? result.Temperature,
                TopP = options.TopP ?? result.TopP,
                TopK = options.TopK ?? result.TopK,
                Seed = options.Seed is { } seed ? unchecked((ulong)seed) : result.Seed,
                FrequencyPenalty = options.FrequencyPenalty ?? result.FrequencyPenalty,
                PresencePenalty = options.PresencePenalty ?? result.PresencePenalty,
            };
        }
        try
        {
            return result.Validate();
        }
        catch (ArgumentOutOfRangeException e)
        {
            throw new ArgumentException($"The chat options are out of range: {e.Message}", nameof(options), e);
        }
    }

    /// <summary>
    /// Prefills what the cache lacks, then decodes; yields text as it becomes final (through <paramref name="splitter"/>:
    /// thoughts apart from the answer, tool calls apart from text), then the finish and usage.
    /// </summary>
    private IEnumerable<ChatResponseUpdate> Run(IReadOnlyList<int> prompt, GenerationOptions options, string[] stops, ReplyAssembler splitter,
        bool showReasoning, CancellationToken cancellationToken)
    {
        ChatResponseUpdate? Update(List<AIContent> contents)
        {
            if (!showReasoning) contents.RemoveAll(c => c is TextReasoningContent);
            return contents.Count == 0 ? null : new ChatResponseUpdate(ChatRole.Assistant, contents);
        }
        int reasoningTokens = 0;
        int reused = CommonPrefix(prompt);
        if (reused == prompt.Count) reused--;                      // the last prompt token must be read again for its logits
        if (reused < _cached.Count)
        {
            // A sliding-window ring that has wrapped no longer holds the common prefix: read the whole prompt again.
            if (!_cache.CanRewindTo(reused)) reused = 0;
            _cache.RewindTo(reused);
            _cached.RemoveRange(reused, _cached.Count - reused);
        }
        var stopIds = (options.StopTokenIds ?? []).ToHashSet();
        using var sampler = new TokenSampler(options);
        var generated = new List<int>();
        // What the penalties read, kept up to date as tokens come, as GenerationSession keeps them.
        int vocab = _model.Config.VocabSize;
        bool[]? seen = options.PenalisesRepetition ? new bool[vocab] : null;   // the prompt and the reply so far
        float[]? counts = options.PenalisesGeneratedTokens ? new float[vocab] : null; // the reply so far
        if (seen is not null) foreach (int t in prompt) seen[t] = true;
        var text = new System.Text.StringBuilder();   // the reply so far; only its tail is searched at each step
        int emitted = 0;                              // how much of it was given out
        int longestStop = stops.Select(s => s.Length).DefaultIfEmpty(0).Max();
        var detokenizer = new StreamingDetokenizer(ids => _tokenizer.Decode(ids, skipSpecialTokens: true)); // linear in the reply
        bool cutAtStopSequence = false;
        ChatFinishReason finish = ChatFinishReason.Length;
        int room = _cache.Capacity - prompt.Count;
        var feed = prompt.Skip(reused).ToList();
        for (int step = 0; step < Math.Min(options.MaxNewTokens, room); step++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int next = Forward(feed, sampler, seen, counts);
            _cached.AddRange(feed);
            if (stopIds.Contains(next)) { finish = ChatFinishReason.Stop; break; }
            generated.Add(next);
            if (seen is not null) seen[next] = true;
            if (counts is not null) counts[next]++;
            feed = [next];
            if (splitter.Thinking) reasoningTokens++;      // a token that ends the thoughts counts with them
            text.Append(detokenizer.Add(next));
            // What was given out holds no stop sequence and ends in no start of one, so a stop sequence, if any, begins
            // in the last longestStop characters before what is new: only that tail is searched.
            int from = Math.Max(0, emitted - longestStop);
            string tail = text.ToString(from, text.Length - from);
            int cut = stops.Select(s => tail.IndexOf(s, StringComparison.Ordinal)).Where(i => i >= 0).DefaultIfEmpty(-1).Min();
            if (cut >= 0)
            {
                cut += from;
                if (cut > emitted && Update(splitter.Push(text.ToString(emitted, cut - emitted))) is { } last) yield return last;
                emitted = cut;
                finish = ChatFinishReason.Stop;
                cutAtStopSequence = true;
                break;
            }
            // Hold back an incomplete character and anything that could still become a stop sequence.
            int safe = tail.Length;
            if (safe > 0 && tail[^1] == '\uFFFD') safe--;
            foreach (var s in stops)
                for (int k = Math.Min(s.Length - 1, safe); k > 0; k--)
                    if (string.CompareOrdinal(tail, safe - k, s, 0, k) == 0) { safe -= k; break; }
            safe += from;
            if (safe > emitted)
            {
                var update = Update(splitter.Push(text.ToString(emitted, safe - emitted)));
                emitted = safe;
                if (update is not null) yield return update;
            }
        }
        // What was held back (a partial character, a possible start of a stop sequence) is the reply's end, unless a stop
        // sequence cut it: out of room, or at an end-of-turn id alike.
        if (!cutAtStopSequence) text.Append(detokenizer.Rest());
        var rest = !cutAtStopSequence && text.Length > emitted ? splitter.Push(text.ToString(emitted, text.Length - emitted)) : [];
        rest.AddRange(splitter.Finish());
        if (Update(rest) is { } end) yield return end;
        if (splitter.HasCalls) finish = ChatFinishReason.ToolCalls;
        var usage = new UsageDetails
        {
            InputTokenCount = prompt.Count,
            OutputTokenCount = generated.Count,
            TotalTokenCount = prompt.Count + generated.Count,
            ReasoningTokenCount = reasoningTokens > 0 ? reasoningTokens : null,
            AdditionalCounts = new AdditionalPropertiesDictionary<long> { [CachedInputTokensKey] = reused },
        };
        yield return new ChatResponseUpdate { Role = ChatRole.Assistant, FinishReason = finish, Contents = [new UsageContent(usage)] };
    }

    private int CommonPrefix(IReadOnlyList<int> prompt)
    {
        int n = 0;
        while (n < _cached.Count && n < prompt.Count && _cached[n] == prompt[n]) n++;
        return n;
    }

    /// <summary>
    /// Reads <paramref name="tokens"/> into the cache and picks the next token; <paramref name="seen"/> and
    /// <paramref name="counts"/> [vocab] feed the penalties, null when they are off (<see cref="TokenSampler.Sample"/>).
    /// </summary>
    private int Forward(List<int> tokens, TokenSampler sampler, bool[]? seen, float[]? counts)
    {
        using var scope = NewDisposeScope();
        try
        {
            var ids = tensor(tokens.Select(t => (long)t).ToArray(), device: _model.Device).view(1, tokens.Count);
            var logits = _model.forward(ids, _cache, lastTokenOnly: true).squeeze(1);   // [1, vocab]
            return (int)sampler.Sample(logits, seen is null ? null : tensor(seen).view(1, -1), counts is null ? null : tensor(counts).view(1, -1))[0];
        }
        catch
        {
            // The cache must hold exactly what _cached says, error or not. In a ring the failed forward's writes may
            // have overwritten tokens still counted (once Length + T passes the window), so that cache starts afresh.
            if (_cached.Count + tokens.Count > _cache.SmallestRing)
            {
                _cache.Reset();
                _cached.Clear();
            }
            else
                _cache.RewindTo(Math.Min(_cache.Length, _cached.Count));
            throw;
        }
    }

    /// <inheritdoc />
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        object?[] services = [this, _model, _tokenizer, _template, _cache, _metadata];
        return services.FirstOrDefault(serviceType.IsInstanceOfType);
    }

    /// <summary>Frees the cache, and the model if <see cref="FromPretrained"/> loaded it.</summary>
    public void Dispose()
    {
        _cache.Dispose();
        if (_ownsModel) _model.Dispose();
        _gate.Dispose();
    }
}
