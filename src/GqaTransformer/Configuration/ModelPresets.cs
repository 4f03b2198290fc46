namespace GqaTransformer;

/// <summary>
/// The shapes of well-known models (from their published config.json files), for sizing KV caches without
/// downloading anything. Only the attention and size fields matter here; weights are not included. The presets of
/// today's families are those config.json files themselves, embedded (docs/model-configs.md says where each was read).
/// </summary>
public static class ModelPresets
{
    private static DecoderConfig Llama(int layers, int hidden, int heads, int kvHeads, int intermediate, int vocab, int maxPositions,
        double theta = 10000.0, string modelType = "llama") => new()
    {
        ModelType = modelType,
        HiddenSize = hidden,
        NumAttentionHeads = heads,
        NumKeyValueHeads = kvHeads,
        NumHiddenLayers = layers,
        IntermediateSize = intermediate,
        VocabSize = vocab,
        MaxPositionEmbeddings = maxPositions,
        RopeTheta = theta,
        RmsNormEps = 1e-5,
    };

    /// <summary>Presets by name (case-insensitive).</summary>
    public static IReadOnlyDictionary<string, DecoderConfig> All { get; } = new Dictionary<string, DecoderConfig>
    {
        ["llama-2-7b"] = Llama(32, 4096, 32, 32, 11008, 32000, 4096),
        ["llama-2-13b"] = Llama(40, 5120, 40, 40, 13824, 32000, 4096),
        ["llama-2-70b"] = Llama(80, 8192, 64, 8, 28672, 32000, 4096),
        ["llama-3-8b"] = Llama(32, 4096, 32, 8, 14336, 128256, 131072, 500000.0),
        ["llama-3-70b"] = Llama(80, 8192, 64, 8, 28672, 128256, 131072, 500000.0),
        ["mistral-7b"] = Llama(32, 4096, 32, 8, 14336, 32768, 32768, 1000000.0, "mistral"),
        ["qwen2-7b"] = Llama(28, 3584, 28, 4, 18944, 152064, 131072, 1000000.0, "qwen2"),
    }.Concat(Embedded()).ToDictionary(p => p.Key, p => p.Value, StringComparer.OrdinalIgnoreCase);

    /// <summary>The embedded config.json presets, by file name (<c>gemma-3-4b</c>, <c>qwen3-8b</c>, ...).</summary>
    private static IEnumerable<KeyValuePair<string, DecoderConfig>> Embedded()
    {
        const string prefix = "GqaTransformer.Presets.";
        var assembly = typeof(ModelPresets).Assembly;
        foreach (var resource in assembly.GetManifestResourceNames().Where(n => n.StartsWith(prefix, StringComparison.Ordinal)).Order())
        {
            using var reader = new StreamReader(assembly.GetManifestResourceStream(resource)!);
            yield return new(resource[prefix.Length..^".json".Length], DecoderConfig.FromJson(reader.ReadToEnd()));
        }
    }

    /// <summary>The preset called <paramref name="name"/>.</summary>
    /// <exception cref="ArgumentException">No preset of that name; the message lists the known ones.</exception>
    public static DecoderConfig Get(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return All.TryGetValue(name, out var config)
            ? config
            : throw new ArgumentException($"Unknown preset '{name}'; known presets are {string.Join(", ", All.Keys)}.", nameof(name));
    }
}
