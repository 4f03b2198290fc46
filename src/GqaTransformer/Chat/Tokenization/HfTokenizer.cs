using System.Buffers;
using System.Text.Json;
using Microsoft.ML.Tokenizers;

namespace GqaTransformer;

/// <summary>
/// A Hugging Face <c>tokenizer.json</c> with a BPE model: byte-level (GPT-2, Llama 3, Qwen2 and Qwen3: Split and ByteLevel
/// pre-tokenizers, <c>ignore_merges</c>, NFC) or SentencePiece-style (Llama 2, Mistral, Gemma and Gemma 3: Prepend and
/// Replace normalizers, byte fallback, Replace/ByteFallback/Fuse/Strip decoders). Added and special tokens are matched whole in the text and
/// never split; the post-processor adds BOS where the file says so. It is a Microsoft.ML.Tokenizers
/// <see cref="Tokenizer"/>, so it works wherever one is taken (<see cref="TextGeneration"/>). Thread-safe.
/// </summary>
public sealed class HfTokenizer : Tokenizer
{
    private const long MaxFileBytes = 512L * 1024 * 1024;
    private readonly BpeModel _model;
    private readonly Func<string, string> _normalize;
    private readonly Func<IEnumerable<string>, bool, IEnumerable<string>> _preTokenize;
    private readonly Func<List<string>, List<string>> _decode;
    private readonly Dictionary<string, AddedToken> _added = new(StringComparer.Ordinal);
    private readonly Dictionary<int, string> _idToToken = [];
    private readonly AddedTokenMatcher<AddedToken> _addedMatcher = new();
    private readonly int[] _prefixIds = [], _suffixIds = [];

    private sealed record AddedToken(int Id, string Content, bool Special);

    private HfTokenizer(JsonElement root)
    {
        var model = root.GetProperty("model");
        string type = model.TryGetProperty("type", out var t) ? t.GetString() ?? "" : "BPE"; // older files omit it
        if (type != "BPE")
            throw new NotSupportedException($"tokenizer.json has a '{type}' model; this library reads BPE tokenizers (GPT-2, Llama, Mistral, Qwen2 and the like).");
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var entry in model.GetProperty("vocab").EnumerateObject()) vocab[entry.Name] = entry.Value.GetInt32();
        var merges = new List<(string, string)>();
        foreach (var merge in model.GetProperty("merges").EnumerateArray())
        {
            if (merge.ValueKind == JsonValueKind.Array && merge.GetArrayLength() == 2)
                merges.Add((merge[0].GetString()!, merge[1].GetString()!));
            else if (merge.ValueKind == JsonValueKind.String && merge.GetString()!.Split(' ') is [var a, var b])
                merges.Add((a, b));
            else throw new InvalidDataException($"tokenizer.json holds a merge that is not two symbols: {merge.GetRawText()}.");
        }
        if (Str(model, "continuing_subword_prefix") is { Length: > 0 } || Str(model, "end_of_word_suffix") is { Length: > 0 })
            throw new NotSupportedException("tokenizer.json uses continuing_subword_prefix or end_of_word_suffix, which this library does not implement.");
        _model = new BpeModel(vocab, merges, Flag(model, "ignore_merges"), Flag(model, "byte_fallback"), Str(model, "unk_token"), Flag(model, "fuse_unk"));
        foreach (var (token, id) in vocab) _idToToken[id] = token;

        if (root.TryGetProperty("added_tokens", out var addedTokens))
            foreach (var added in addedTokens.EnumerateArray())
            {
                var token = new AddedToken(added.GetProperty("id").GetInt32(), added.GetProperty("content").GetString()!, Flag(added, "special"));
                if (token.Content.Length == 0) continue;
                _added[token.Content] = token;
                _idToToken[token.Id] = token.Content;
                _addedMatcher.Add(token.Content, token, Flag(added, "lstrip"), Flag(added, "rstrip"));
            }

        _normalize = TokenizerSteps.Normalizer(Property(root, "normalizer"));
        _preTokenize = TokenizerSteps.PreTokenizer(Property(root, "pre_tokenizer"));
        _decode = TokenizerSteps.Decoder(Property(root, "decoder"));
        (_prefixIds, _suffixIds) = Template(Property(root, "post_processor"));
        foreach (int id in _prefixIds.Concat(_suffixIds))
            if (!_idToToken.ContainsKey(id))
                throw new InvalidDataException($"tokenizer.json's post_processor adds id {id}, which is neither in the vocabulary nor an added token.");
    }

    /// <summary>Loads <c>tokenizer.json</c> from a file, or from a model directory that holds one.</summary>
    /// <exception cref="FileNotFoundException">No such file.</exception>
    /// <exception cref="InvalidDataException">The file is not a valid tokenizer.json, with what is wrong.</exception>
    /// <exception cref="NotSupportedException">It uses a model or step this library does not implement, named.</exception>
    public static HfTokenizer FromFile(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (Directory.Exists(path)) path = Path.Combine(path, "tokenizer.json");
        var info = new FileInfo(path);
        if (!info.Exists) throw new FileNotFoundException($"Tokenizer file '{path}' does not exist.", path);
        if (info.Length > MaxFileBytes) throw new InvalidDataException($"'{path}' is {info.Length} bytes; a tokenizer.json over {MaxFileBytes} bytes is refused.");
        using var stream = File.OpenRead(path);    // parsed as UTF-8 bytes: Gemma 3's 33 MB file is not also held as a 66 MB string
        return Parse(() => JsonDocument.Parse(stream, Options), path);
    }

    /// <summary>Parses the text of a tokenizer.json (what <see cref="FromFile"/> does after its size check).</summary>
    internal static HfTokenizer FromJson(string json, string name = "tokenizer.json") => Parse(() => JsonDocument.Parse(json, Options), name);

    private static readonly JsonDocumentOptions Options = new() { MaxDepth = 64 };

    private static HfTokenizer Parse(Func<JsonDocument> read, string name)
    {
        try
        {
            using var doc = read();
            return new HfTokenizer(doc.RootElement);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException or ArgumentException)
        {
            throw new InvalidDataException($"'{name}' is not a valid tokenizer.json: {e.Message}", e);
        }
    }

    /// <summary>Number of ids: the vocabulary and the added tokens.</summary>
    public int VocabularySize => _idToToken.Count;

    /// <summary>The id of a token's text (an added token's content, or a vocabulary entry), or null.</summary>
    public int? TokenToId(string token) => _added.TryGetValue(token, out var added) ? added.Id : _model.Vocab.TryGetValue(token, out int id) ? id : null;

    /// <summary>
    /// The ids of <paramref name="text"/>: added and special tokens matched whole, the rest normalized, pre-tokenized and
    /// merged; with <paramref name="addSpecialTokens"/>, what the post-processor adds (BOS for Llama 2, say).
    /// </summary>
    public IReadOnlyList<int> Encode(string text, bool addSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>(text.Length / 4 + 8);
        foreach (var (pieceIds, _) in Pieces(text, addSpecialTokens)) ids.AddRange(pieceIds);
        return ids;
    }

    /// <summary>The text of <paramref name="ids"/>; special tokens kept unless <paramref name="skipSpecialTokens"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An id the tokenizer does not have.</exception>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var tokens = new List<string>();
        foreach (int id in ids)
        {
            if (!_idToToken.TryGetValue(id, out var token))
                throw new ArgumentOutOfRangeException(nameof(ids), id, $"Token id {id} is not in this tokenizer (ids 0..{_idToToken.Keys.Max()}).");
            if (skipSpecialTokens && _added.TryGetValue(token, out var added) && added.Special) continue;
            tokens.Add(token);
        }
        return string.Concat(_decode(tokens));
    }

    /// <inheritdoc />
    public override string Decode(IEnumerable<int> ids) => Decode(ids, skipSpecialTokens: false);

    /// <inheritdoc />
    public override OperationStatus Decode(IEnumerable<int> ids, Span<char> destination, out int idsConsumed, out int charsWritten)
    {
        var list = ids.ToList();
        string text = Decode(list, skipSpecialTokens: false);
        if (text.Length > destination.Length)
        {
            idsConsumed = charsWritten = 0;
            return OperationStatus.DestinationTooSmall;
        }
        text.CopyTo(destination);
        idsConsumed = list.Count;
        charsWritten = text.Length;
        return OperationStatus.Done;
    }

    /// <summary>Encodes with the post-processor's special tokens (as HF's default); each token's offset covers its pre-token's span.</summary>
    protected override EncodeResults<EncodedToken> EncodeToTokens(string? text, ReadOnlySpan<char> textSpan, EncodeSettings settings)
    {
        string input = text ?? textSpan.ToString();
        var tokens = new List<EncodedToken>();
        foreach (var (ids, at) in Pieces(input, addSpecialTokens: true))
            foreach (int id in ids) tokens.Add(new EncodedToken(id, _idToToken[id], at));
        if (settings.MaxTokenCount > 0 && tokens.Count > settings.MaxTokenCount) tokens.RemoveRange(settings.MaxTokenCount, tokens.Count - settings.MaxTokenCount);
        return new EncodeResults<EncodedToken> { Tokens = tokens, NormalizedText = null, CharsConsumed = input.Length };
    }

    /// <summary>
    /// The encoding as groups of ids, each with the span of text it came from: the post-processor's prefix (at 0..0), each
    /// added token, each pre-token's merged ids, the post-processor's suffix (at the end).
    /// </summary>
    private IEnumerable<(int[] Ids, Range At)> Pieces(string text, bool addSpecialTokens)
    {
        if (addSpecialTokens && _prefixIds.Length > 0) yield return (_prefixIds, 0..0);
        foreach (var (segment, start, added) in Segments(text))
        {
            var at = start..(start + segment.Length);
            if (added is not null) { yield return ([added.Id], at); continue; }
            foreach (var piece in _preTokenize([_normalize(segment)], start == 0)) yield return (_model.Tokenize(piece), at);
        }
        if (addSpecialTokens && _suffixIds.Length > 0) yield return (_suffixIds, text.Length..text.Length);
    }

    /// <summary>The text cut at added tokens: plain segments (added = null) and the added tokens, with their offsets.</summary>
    private IEnumerable<(string Text, int Start, AddedToken? Added)> Segments(string text)
    {
        int at = 0;
        foreach (var (start, end, token) in _addedMatcher.Matches(text))
        {
            if (start > at) yield return (text[at..start], at, null);
            yield return (text[start..end], start, token);    // may overlap the previous one's rstrip whitespace, as in HF
            at = end;
        }
        if (at < text.Length) yield return (text[at..], at, null);
    }

    /// <summary>The ids a TemplateProcessing post-processor puts before and after a single sequence.</summary>
    private static (int[] Prefix, int[] Suffix) Template(JsonElement json)
    {
        if (json.ValueKind is JsonValueKind.Null or JsonValueKind.Undefined) return ([], []);
        string type = json.GetProperty("type").GetString() ?? "";
        switch (type)
        {
            case "ByteLevel":
                return ([], []);
            case "Sequence":
            {
                var parts = json.GetProperty("processors").EnumerateArray().Select(Template).ToList();
                return ([.. parts.SelectMany(p => p.Prefix)], [.. parts.SelectMany(p => p.Suffix)]);
            }
            case "TemplateProcessing":
            {
                var special = json.GetProperty("special_tokens");
                List<int> prefix = [], suffix = [];
                bool seenSequence = false;
                foreach (var item in json.GetProperty("single").EnumerateArray())
                {
                    if (item.TryGetProperty("Sequence", out _)) { seenSequence = true; continue; }
                    string name = item.GetProperty("SpecialToken").GetProperty("id").GetString()!;
                    var ids = special.GetProperty(name).GetProperty("ids").EnumerateArray().Select(i => i.GetInt32());
                    (seenSequence ? suffix : prefix).AddRange(ids);
                }
                return ([.. prefix], [.. suffix]);
            }
            default:
                throw new NotSupportedException($"tokenizer.json uses a post_processor of type '{type}', which this library does not implement.");
        }
    }

    private static JsonElement Property(JsonElement json, string name)
        => json.TryGetProperty(name, out var value) ? value : default;

    private static bool Flag(JsonElement json, string name)
        => json.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.True;

    private static string? Str(JsonElement json, string name)
        => json.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;
}
