using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>How <see cref="GqaConversion"/> makes each new key/value head from the group of heads it replaces.</summary>
public enum KvHeadInit
{
    /// <summary>The mean of the group's heads (Ainslie et al. 2023's choice; best after uptraining).</summary>
    Mean,

    /// <summary>The group's first head.</summary>
    First,

    /// <summary>Random, normal with standard deviation 0.02 (a baseline: the trained heads are thrown away).</summary>
    Random,
}

/// <summary>
/// Converts a checkpoint with H key/value heads into one with fewer (any divisor of H), the way GQA models are made from
/// MHA ones (Ainslie et al. 2023, "GQA: Training Generalized Multi-Query Transformer Models from Multi-Head
/// Checkpoints"): each new head of <c>k_proj</c> and <c>v_proj</c> (weights and biases) replaces the G = H / kv heads of
/// its group, by their mean, their first head, or at random; every other tensor is copied. Query head h then reads
/// key/value head h / G, as before it read its own. The result is an ordinary HF checkpoint; short uptraining recovers
/// most of the quality (docs/migration.md once measured).
/// </summary>
public static class GqaConversion
{
    /// <summary>
    /// Converts the checkpoint in <paramref name="source"/> (config.json and safetensors, sharded or not) into
    /// <paramref name="destination"/> with <paramref name="numKvHeads"/> key/value heads. Streams tensor by tensor and
    /// shard by shard, so no more than one tensor is in memory at a time; other files (tokenizer, generation config)
    /// are copied. kv equal to the source's is an exact copy.
    /// </summary>
    /// <param name="source">Checkpoint directory to read.</param>
    /// <param name="destination">Directory to write (created; must not be <paramref name="source"/>).</param>
    /// <param name="numKvHeads">Key/value heads of the result; divides the source's.</param>
    /// <param name="init">How each new head is made.</param>
    /// <param name="seed">Seed for <see cref="KvHeadInit.Random"/>.</param>
    /// <returns>The converted model's config.</returns>
    public static DecoderConfig ConvertCheckpoint(string source, string destination, int numKvHeads, KvHeadInit init = KvHeadInit.Mean, long seed = 0)
    {
        ArgumentException.ThrowIfNullOrEmpty(source);
        ArgumentException.ThrowIfNullOrEmpty(destination);
        if (!Directory.Exists(source)) throw new DirectoryNotFoundException($"Model directory '{source}' does not exist.");
        if (Path.GetFullPath(source).TrimEnd('/') == Path.GetFullPath(destination).TrimEnd('/'))
            throw new ArgumentException($"destination must differ from source, but both are '{source}'.", nameof(destination));
        if (!Enum.IsDefined(init)) throw new ArgumentOutOfRangeException(nameof(init), init, "init must be Mean, First or Random.");
        TorchBackend.EnsureLoaded();
        var config = DecoderConfig.FromFile(Path.Combine(source, PretrainedCheckpoint.ConfigFile));
        int heads = config.NumKeyValueHeads;
        if (numKvHeads < 1 || heads % numKvHeads != 0)
            throw new ArgumentOutOfRangeException(nameof(numKvHeads), numKvHeads,
                $"numKvHeads must divide the model's {heads} key/value heads, but was {numKvHeads}.");
        var converted = config with { NumKeyValueHeads = numKvHeads };
        Directory.CreateDirectory(destination);
        using var generator = new torch.Generator((ulong)seed);
        foreach (var shard in PretrainedCheckpoint.WeightFileNames(source))
        {
            using var file = SafetensorsFile.Open(Path.Combine(source, shard));
            var tensors = file.Entries.Values.Select(entry =>
            {
                bool kv = IsKeyOrValue(entry.Name);
                long[] shape = kv ? [entry.Shape[0] / heads * numKvHeads, .. entry.Shape.Skip(1)] : entry.Shape;
                return (entry.Name, entry.Dtype, shape, (Func<Tensor>)(() =>
                {
                    var tensor = file.Read(entry.Name);
                    if (!kv || numKvHeads == heads) return tensor;
                    using (tensor) return Pool(tensor, heads, numKvHeads, init, generator);
                }), true);
            });
            SafetensorsFile.Write(Path.Combine(destination, shard), tensors, file.Metadata);
        }
        foreach (var path in Directory.EnumerateFiles(source))
        {
            string name = Path.GetFileName(path);
            if (name == PretrainedCheckpoint.ConfigFile || name.EndsWith(".safetensors", StringComparison.Ordinal)) continue;
            if (name == PretrainedCheckpoint.IndexFile || !name.EndsWith(".bin", StringComparison.Ordinal))
                File.Copy(path, Path.Combine(destination, name), overwrite: true); // the index lists the same keys and shards
        }
        converted.Save(Path.Combine(destination, PretrainedCheckpoint.ConfigFile));
        return converted;
    }

    private static bool IsKeyOrValue(string name)
        => name.EndsWith(".self_attn.k_proj.weight", StringComparison.Ordinal) || name.EndsWith(".self_attn.k_proj.bias", StringComparison.Ordinal)
           || name.EndsWith(".self_attn.v_proj.weight", StringComparison.Ordinal) || name.EndsWith(".self_attn.v_proj.bias", StringComparison.Ordinal);

    /// <summary>
    /// A k_proj or v_proj weight [H·D, hidden] (or bias [H·D]) with heads as consecutive blocks of rows → [kv·D, ...]:
    /// block j of the result made from blocks j·G .. j·G + G − 1, in float32, returned in the input's dtype.
    /// </summary>
    internal static Tensor Pool(Tensor projection, int heads, int numKvHeads, KvHeadInit init, torch.Generator? generator = null)
    {
        using var scope = NewDisposeScope();
        long rows = projection.size(0), headDim = rows / heads;
        var rest = projection.shape.Skip(1).ToArray();
        var groups = projection.to(ScalarType.Float32).reshape([numKvHeads, heads / numKvHeads, headDim, .. rest]); // [kv, G, D, ...]
        var pooled = init switch
        {
            KvHeadInit.Mean => groups.mean([1]),
            KvHeadInit.First => groups.select(1, 0),
            _ => normal(0.0, 0.02, [numKvHeads, headDim, .. rest], generator: generator),
        };
        return pooled.reshape([numKvHeads * headDim, .. rest]).to(projection.dtype).contiguous().MoveToOuterDisposeScope();
    }
}
