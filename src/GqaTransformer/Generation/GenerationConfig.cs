using System.Text.Json;
using System.Text.Json.Serialization;

namespace GqaTransformer;

/// <summary>
/// A model's <c>generation_config.json</c>: the stop ids (Llama 3 lists several, <c>&lt;|eot_id|&gt;</c> among them)
/// and the sampling defaults its authors chose. <see cref="ToOptions"/> turns it into <see cref="GenerationOptions"/>.
/// </summary>
public sealed record GenerationConfig
{
    /// <summary>Token ids that end generation (<c>eos_token_id</c>: an int or a list).</summary>
    [JsonPropertyName("eos_token_id")]
    [JsonConverter(typeof(IntOrIntListConverter))]
    public IReadOnlyList<int>? EosTokenIds { get; init; }

    /// <summary>The beginning-of-sequence id (<c>bos_token_id</c>).</summary>
    [JsonPropertyName("bos_token_id")] public int? BosTokenId { get; init; }

    /// <summary>The padding id (<c>pad_token_id</c>).</summary>
    [JsonPropertyName("pad_token_id")] public int? PadTokenId { get; init; }

    /// <summary>Whether to sample (<c>do_sample</c>); false or absent means greedy, as in transformers.</summary>
    [JsonPropertyName("do_sample")] public bool? DoSample { get; init; }

    /// <summary>Sampling temperature (<c>temperature</c>).</summary>
    [JsonPropertyName("temperature")] public double? Temperature { get; init; }

    /// <summary>Nucleus sampling mass (<c>top_p</c>).</summary>
    [JsonPropertyName("top_p")] public double? TopP { get; init; }

    /// <summary>Top-k sampling (<c>top_k</c>).</summary>
    [JsonPropertyName("top_k")] public int? TopK { get; init; }

    /// <summary>Repetition penalty (<c>repetition_penalty</c>).</summary>
    [JsonPropertyName("repetition_penalty")] public double? RepetitionPenalty { get; init; }

    /// <summary>Most new tokens (<c>max_new_tokens</c>).</summary>
    [JsonPropertyName("max_new_tokens")] public int? MaxNewTokens { get; init; }

    /// <summary>Reads <c>generation_config.json</c> from a file or a model directory; null when the directory has none.</summary>
    /// <exception cref="InvalidDataException">The file is not valid JSON of this shape, with the reason.</exception>
    public static GenerationConfig? FromFile(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (Directory.Exists(path))
        {
            path = Path.Combine(path, "generation_config.json");
            if (!File.Exists(path)) return null;
        }
        var info = new FileInfo(path);
        if (!info.Exists) throw new FileNotFoundException($"'{path}' does not exist.", path);
        if (info.Length > 1 << 20) throw new InvalidDataException($"'{path}' is {info.Length} bytes; a generation_config.json over 1 MiB is refused.");
        return FromJson(File.ReadAllText(path), path);
    }

    /// <summary>Parses the text of a generation_config.json.</summary>
    internal static GenerationConfig FromJson(string json, string name = "generation_config.json")
    {
        try
        {
            return JsonSerializer.Deserialize<GenerationConfig>(json, new JsonSerializerOptions { MaxDepth = 16 })
                   ?? throw new InvalidDataException($"'{name}' holds null.");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"'{name}' is not a valid generation_config.json: {e.Message}", e);
        }
    }

    /// <summary>
    /// <paramref name="options"/> (default: a new one) with this file's stop ids and, when it samples, its temperature,
    /// top-k, top-p and repetition penalty; greedy when <c>do_sample</c> is false or absent, as transformers does.
    /// </summary>
    public GenerationOptions ToOptions(GenerationOptions? options = null)
    {
        options ??= new GenerationOptions();
        bool sample = DoSample == true;
        return options with
        {
            StopTokenIds = EosTokenIds ?? options.StopTokenIds,
            MaxNewTokens = MaxNewTokens ?? options.MaxNewTokens,
            Temperature = sample ? Temperature ?? 1.0 : 0,
            TopK = sample ? TopK ?? options.TopK : options.TopK,
            TopP = sample ? TopP ?? options.TopP : options.TopP,
            RepetitionPenalty = RepetitionPenalty ?? options.RepetitionPenalty,
        };
    }
}
