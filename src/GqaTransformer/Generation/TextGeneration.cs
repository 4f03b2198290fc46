using System.Runtime.CompilerServices;
using Microsoft.ML.Tokenizers;

namespace GqaTransformer;

/// <summary>
/// Text in, text out, for users with a <see cref="Tokenizer"/> from Microsoft.ML.Tokenizers. Token ids stay the core
/// API; these helpers encode the prompt, generate, and decode incrementally so streamed pieces never split a character.
/// </summary>
public static class TextGeneration
{
    /// <summary>
    /// Loads a tokenizer: a Hugging Face <c>tokenizer.json</c> (<see cref="HfTokenizer"/>), a SentencePiece
    /// <c>tokenizer.model</c> (Llama 2, Mistral), a <c>.tiktoken</c> file (cl100k-style BPE ranks), or a directory
    /// holding one of them (tokenizer.json first) or <c>vocab.json</c> and <c>merges.txt</c> (GPT-2-style BPE).
    /// </summary>
    /// <exception cref="FileNotFoundException">Nothing at <paramref name="path"/>, or a directory without a tokenizer.</exception>
    /// <exception cref="NotSupportedException">A file of another kind, named (Llama 3's tiktoken-format <c>original/tokenizer.model</c> among them).</exception>
    public static Tokenizer LoadTokenizer(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (Directory.Exists(path))
        {
            if (File.Exists(Path.Combine(path, "tokenizer.json"))) return HfTokenizer.FromFile(Path.Combine(path, "tokenizer.json"));
            string vocab = Path.Combine(path, "vocab.json"), merges = Path.Combine(path, "merges.txt");
            if (File.Exists(vocab) && File.Exists(merges)) return BpeTokenizer.Create(vocab, merges);
            if (File.Exists(Path.Combine(path, "tokenizer.model"))) return LoadTokenizer(Path.Combine(path, "tokenizer.model"));
            throw new FileNotFoundException($"'{path}' holds no tokenizer.json, vocab.json + merges.txt, or tokenizer.model.", path);
        }
        if (!File.Exists(path)) throw new FileNotFoundException($"Tokenizer file '{path}' does not exist.", path);
        string extension = Path.GetExtension(path).ToLowerInvariant();
        if (extension == ".json") return HfTokenizer.FromFile(path);
        if (extension == ".model" && LooksLikeTiktoken(path))
            throw new NotSupportedException(
                $"'{path}' is a tiktoken-format file (Llama 3's original/tokenizer.model), not SentencePiece; load the model folder's tokenizer.json instead.");
        using var stream = File.OpenRead(path);
        return extension switch
        {
            ".model" => LlamaTokenizer.Create(stream, addBeginOfSentence: true, addEndOfSentence: false),
            ".tiktoken" => TiktokenTokenizer.CreateForModel("gpt-4", stream),
            _ => throw new NotSupportedException(
                $"Tokenizer file '{path}' is of an unsupported kind; use tokenizer.json, a SentencePiece .model, a .tiktoken file, or a directory with vocab.json and merges.txt."),
        };
    }

    /// <summary>Whether a file starts as tiktoken's format does: lines of "base64-token rank".</summary>
    private static bool LooksLikeTiktoken(string path)
    {
        using var reader = new StreamReader(path);
        var buffer = new char[256];
        int read = reader.ReadBlock(buffer, 0, buffer.Length);
        string head = new(buffer, 0, read);
        int newline = head.IndexOf('\n', StringComparison.Ordinal);
        string first = newline > 0 ? head[..newline] : head;
        return first.Split(' ') is [var token, var rank] && token.Length > 0 && rank.Length > 0 && rank.All(char.IsAsciiDigit)
               && token.All(c => char.IsAsciiLetterOrDigit(c) || c is '+' or '/' or '=');
    }

    /// <summary>Generates a continuation of <paramref name="prompt"/> and returns it as text.</summary>
    public static string GenerateText(this TokenGenerator generator, Tokenizer tokenizer, string prompt, GenerationOptions options,
        CancellationToken cancellationToken = default)
        => string.Concat(generator.StreamText(tokenizer, prompt, options, cancellationToken));

    /// <summary>Yields the continuation of <paramref name="prompt"/> piece by piece as tokens are produced.</summary>
    public static IEnumerable<string> StreamText(this TokenGenerator generator, Tokenizer tokenizer, string prompt, GenerationOptions options,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(generator);
        var decoder = new IncrementalDecoder(tokenizer ?? throw new ArgumentNullException(nameof(tokenizer)));
        foreach (var token in generator.Stream(Encode(tokenizer, prompt), options, cancellationToken))
            if (decoder.Add(token) is { Length: > 0 } piece) yield return piece;
    }

    /// <summary>Asynchronous form of <see cref="StreamText"/>.</summary>
    public static async IAsyncEnumerable<string> StreamTextAsync(this TokenGenerator generator, Tokenizer tokenizer, string prompt,
        GenerationOptions options, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(generator);
        var decoder = new IncrementalDecoder(tokenizer ?? throw new ArgumentNullException(nameof(tokenizer)));
        await foreach (var token in generator.StreamAsync(Encode(tokenizer, prompt), options, cancellationToken).ConfigureAwait(false))
            if (decoder.Add(token) is { Length: > 0 } piece) yield return piece;
    }

    private static IReadOnlyList<int> Encode(Tokenizer tokenizer, string prompt)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        var ids = tokenizer.EncodeToIds(prompt);
        if (ids.Count == 0) throw new ArgumentException("The prompt encodes to no tokens.", nameof(prompt));
        return ids;
    }

    /// <summary>Hands out only the new, complete text of each token (<see cref="StreamingDetokenizer"/>).</summary>
    private sealed class IncrementalDecoder(Tokenizer tokenizer)
    {
        private readonly StreamingDetokenizer _text = new(ids => tokenizer.Decode(ids) ?? "");

        public string Add(int token) => _text.Add(token);
    }
}
