using System.Globalization;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>
/// The tensors a checkpoint must hold for a config, by name and shape, named as <see cref="DecoderModel"/>'s state
/// dict names them (HF's keys). Worked out from the config alone (one layer on the meta device, which holds no data),
/// so a checkpoint is checked against it before any real module is built. Two small tables (the tensors outside the layers, and those of one layer) stand for the whole
/// list: names are enumerated lazily and looked up by parsing, so a config that claims 2^30 layers costs nothing.
/// </summary>
internal sealed class CheckpointLayout
{
    private const string LayerPrefix = "model.layers.";

    private readonly (string Name, long[] Shape)[] _before;   // ahead of the layers: the embedding
    private readonly (string Name, long[] Shape)[] _after;    // behind them: the final norm and the head
    private readonly (string Suffix, long[] Shape)[] _layer;  // one layer's, without "model.layers.{i}."
    private readonly Dictionary<string, long[]> _outerByName;
    private readonly Dictionary<string, long[]> _layerBySuffix;

    public CheckpointLayout(DecoderConfig config)
    {
        config.Validate();
        long hidden = config.HiddenSize, vocab = config.VocabSize;
        Layers = config.NumHiddenLayers;
        _before = [("model.embed_tokens.weight", [vocab, hidden])];
        _after = config.TieWordEmbeddings
            ? [("model.norm.weight", [hidden])]
            : [("model.norm.weight", [hidden]), ("lm_head.weight", [vocab, hidden])];

        // Every layer of a family holds the same tensors, so one layer built on the meta device (shapes, no storage)
        // names them exactly as the modules register them: the family's norms, q/k norms, fused or separate projections.
        using (var meta = new DecoderLayer(config, 0, "layout", new Device(TorchSharp.DeviceType.META)))
            _layer = [.. meta.named_parameters().Select(p => (p.name, p.parameter.shape))];
        _outerByName = _before.Concat(_after).ToDictionary(t => t.Name, t => t.Shape, StringComparer.Ordinal);
        _layerBySuffix = _layer.ToDictionary(t => t.Suffix, t => t.Shape, StringComparer.Ordinal);
    }

    /// <summary>The config's layer count.</summary>
    public int Layers { get; }

    /// <summary>How many tensors the checkpoint must hold.</summary>
    public long Count => _before.Length + _after.Length + (long)Layers * _layer.Length;

    /// <summary>Every tensor, in the model's order (lazily: stop early on a config with many layers).</summary>
    public IEnumerable<(string Name, long[] Shape)> Tensors()
    {
        foreach (var tensor in _before) yield return tensor;
        for (int i = 0; i < Layers; i++)
            foreach (var (suffix, shape) in _layer)
                yield return ($"{LayerPrefix}{i.ToString(CultureInfo.InvariantCulture)}.{suffix}", shape);
        foreach (var tensor in _after) yield return tensor;
    }

    /// <summary>The shape of tensor <paramref name="name"/>, or null if the model has no such tensor.</summary>
    public long[]? ShapeOf(string name)
    {
        if (_outerByName.TryGetValue(name, out var shape)) return shape;
        if (!name.StartsWith(LayerPrefix, StringComparison.Ordinal)) return null;
        int dot = name.IndexOf('.', LayerPrefix.Length);
        if (dot < 0) return null;
        var digits = name.AsSpan(LayerPrefix.Length, dot - LayerPrefix.Length);
        // only the spelling Tensors() gives: no sign, no leading zero, no spaces
        if (digits.Length == 0 || digits.Length > 1 && digits[0] == '0'
            || !int.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out int index) || index >= Layers)
            return null;
        return _layerBySuffix.GetValueOrDefault(name[(dot + 1)..]);
    }

    /// <summary>
    /// Tensors a checkpoint may hold that the model does not load: older HF files' RoPE tables, and lm_head when
    /// the head is tied to the embedding.
    /// </summary>
    public bool Ignorable(string name) => name.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal)
        || name == "lm_head.weight" && !_outerByName.ContainsKey(name);
}
