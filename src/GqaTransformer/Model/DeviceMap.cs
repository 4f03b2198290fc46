using System.Globalization;
using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>
/// Where each part of a <see cref="DecoderModel"/> lives when one device does not hold it all: the embedding, each
/// decoder layer (with its part of the <see cref="KvCache"/>), and the head (final norm and lm_head). Activations move
/// between devices at layer boundaries, as transformers' <c>device_map</c> and Microsoft.ML.GenAI's per-layer map do.
/// One process, one host; past one host, serve the HF checkpoint with vLLM (docs/multi-gpu.md).
/// </summary>
public sealed class DeviceMap
{
    /// <summary>A map from explicit placements.</summary>
    /// <param name="embedding">Device of <c>embed_tokens</c>.</param>
    /// <param name="layers">Device of each decoder layer, in order.</param>
    /// <param name="head">Device of the final norm and <c>lm_head</c> (with tied embeddings, the embedding matrix is read from there too).</param>
    public DeviceMap(Device embedding, IReadOnlyList<Device> layers, Device head)
    {
        ArgumentNullException.ThrowIfNull(embedding);
        ArgumentNullException.ThrowIfNull(layers);
        ArgumentNullException.ThrowIfNull(head);
        if (layers.Count == 0) throw new ArgumentException("layers must name a device for at least one layer, but is empty.", nameof(layers));
        for (int i = 0; i < layers.Count; i++)
            if (layers[i] is null) throw new ArgumentException($"layers[{i}] is null; every layer needs a device.", nameof(layers));
        Embedding = embedding;
        Layers = layers.ToArray();
        Head = head;
    }

    /// <summary>Device of the token embedding; token ids are given on this device.</summary>
    public Device Embedding { get; }

    /// <summary>Device of each decoder layer and of its keys and values in the cache.</summary>
    public IReadOnlyList<Device> Layers { get; }

    /// <summary>Device of the final norm and lm_head; logits come out here.</summary>
    public Device Head { get; }

    /// <summary>Whether every part is on one device.</summary>
    public bool IsSingleDevice => Layers.All(d => Same(d, Embedding)) && Same(Head, Embedding);

    /// <summary>Everything on <paramref name="device"/>.</summary>
    public static DeviceMap Single(Device device, int layers)
    {
        ArgumentNullException.ThrowIfNull(device);
        Guard.Positive(layers, nameof(layers));
        return new DeviceMap(device, Enumerable.Repeat(device, layers).ToArray(), device);
    }

    /// <summary>
    /// Reads <c>DEVICE=LAYERS,DEVICE=LAYERS,...</c>, e.g. <c>cuda:0=12,cuda:1=10</c>: consecutive layers per device, in
    /// order, the embedding on the first device and the head on the last. The counts must add up to <paramref name="layers"/>.
    /// </summary>
    /// <exception cref="ArgumentException">The text is not of that form, names an unknown device, or the counts do not add up.</exception>
    public static DeviceMap Parse(string text, int layers)
    {
        ArgumentException.ThrowIfNullOrEmpty(text);
        Guard.Positive(layers, nameof(layers));
        var placed = new List<Device>();
        Device? first = null, last = null;
        foreach (string part in text.Split(',', StringSplitOptions.TrimEntries))
        {
            string[] pair = part.Split('=');
            if (pair.Length != 2 || !int.TryParse(pair[1], NumberStyles.None, CultureInfo.InvariantCulture, out int count) || count < 1)
                throw new ArgumentException($"Expected DEVICE=LAYERS pairs such as 'cuda:0=12,cuda:1=10', but found '{part}' in '{text}'.", nameof(text));
            Device device;
            try
            {
                device = new Device(pair[0]);
            }
            catch (Exception e) when (e is ArgumentException or FormatException or InvalidOperationException)
            {
                throw new ArgumentException($"'{pair[0]}' in '{text}' is not a device (cpu, cuda or cuda:N).", nameof(text), e);
            }
            first ??= device;
            last = device;
            placed.AddRange(Enumerable.Repeat(device, count));
        }
        if (placed.Count != layers)
            throw new ArgumentException($"The device map '{text}' places {placed.Count} layers, but the model has {layers}.", nameof(text));
        return new DeviceMap(first!, placed, last!);
    }

    /// <summary>
    /// Fills <paramref name="budgets"/> in order, as transformers' <c>infer_auto_device_map</c> does: the embedding, then
    /// each layer with its share of a cache for <paramref name="batchSize"/> × <paramref name="capacity"/> tokens
    /// (<see cref="KvCache.EstimateBytes"/>), then the head, each on the first device with room left.
    /// </summary>
    /// <param name="config">The model's config.</param>
    /// <param name="dtype">Element type of the weights.</param>
    /// <param name="batchSize">Sequences the cache will hold.</param>
    /// <param name="capacity">Tokens per sequence the cache will hold.</param>
    /// <param name="budgets">Devices in order of preference, with the bytes each may take.</param>
    /// <param name="cacheDtype">Element type of the cache; default <paramref name="dtype"/>.</param>
    /// <exception cref="InsufficientMemoryException">The budgets together do not hold the model and its cache.</exception>
    public static DeviceMap Fit(DecoderConfig config, ScalarType dtype, int batchSize, int capacity,
        IReadOnlyList<(Device Device, long Bytes)> budgets, ScalarType? cacheDtype = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(budgets);
        config.Validate();
        Guard.Positive(batchSize, nameof(batchSize));
        Guard.Positive(capacity, nameof(capacity));
        if (budgets.Count == 0) throw new ArgumentException("budgets must name at least one device.", nameof(budgets));
        for (int i = 0; i < budgets.Count; i++)
            if (budgets[i].Device is null || budgets[i].Bytes < 0)
                throw new ArgumentException($"budgets[{i}] must be a device and a non-negative byte count, but was ({budgets[i].Device}, {budgets[i].Bytes}).", nameof(budgets));
        var sizes = PartBytes.Of(config, dtype, batchSize, capacity, cacheDtype ?? dtype);
        long[] left = budgets.Select(b => b.Bytes).ToArray();
        int at = 0;
        Device Place(long bytes, string what)
        {
            while (at < left.Length && left[at] < bytes) at++;
            if (at == left.Length)
                throw new InsufficientMemoryException(
                    $"The devices' budgets ({string.Join(", ", budgets.Select(b => $"{b.Device}: {GiB(b.Bytes)}"))}) do not hold the model and a " +
                    $"{batchSize} × {capacity}-token cache: {what} ({GiB(bytes)}) has no room; the whole needs {GiB(sizes.Total)}.");
            left[at] -= bytes;
            return budgets[at].Device;
        }
        var embedding = Place(sizes.Embedding, "the embedding");
        var layers = Enumerable.Range(0, config.NumHiddenLayers).Select(i => Place(sizes.Layer, $"layer {i} with its cache")).ToArray();
        var head = Place(sizes.Head, "the head");
        return new DeviceMap(embedding, layers, head);
    }

    /// <summary>
    /// <see cref="Fit"/> over every CUDA device, each offering <paramref name="fraction"/> of its free memory now
    /// (<see cref="CudaMemory"/>), the rest left for activations and libtorch's workspaces.
    /// </summary>
    /// <exception cref="InvalidOperationException">No CUDA device, or its memory cannot be read (<see cref="CudaMemory.UnavailableReason"/>).</exception>
    /// <exception cref="InsufficientMemoryException">The GPUs together do not hold the model and its cache.</exception>
    public static DeviceMap Auto(DecoderConfig config, ScalarType dtype, int batchSize, int capacity, ScalarType? cacheDtype = null, double fraction = 0.9)
    {
        if (!(fraction > 0 && fraction <= 1))
            throw new ArgumentOutOfRangeException(nameof(fraction), fraction, "fraction must be in (0, 1].");
        if (!cuda.is_available()) throw new InvalidOperationException("DeviceMap.Auto places the model on CUDA devices, and TorchSharp finds none.");
        var budgets = Enumerable.Range(0, cuda.device_count())
            .Select(i => (new Device(DeviceType.CUDA, i), (long)(CudaMemory.GetStats(i).FreeBytes * fraction))).ToArray();
        return Fit(config, dtype, batchSize, capacity, budgets, cacheDtype);
    }

    /// <summary>The map in <see cref="Parse"/>'s form when the embedding and head sit with the first and last layers, else spelled out.</summary>
    public override string ToString()
    {
        var runs = new List<(Device Device, int Count)>();
        foreach (var device in Layers)
            if (runs.Count > 0 && Same(runs[^1].Device, device)) runs[^1] = (device, runs[^1].Count + 1);
            else runs.Add((device, 1));
        string layers = string.Join(",", runs.Select(r => $"{r.Device}={r.Count}"));
        return Same(Embedding, Layers[0]) && Same(Head, Layers[^1]) ? layers : $"embedding={Embedding} {layers} head={Head}";
    }

    internal static bool Same(Device a, Device b) => a.type == b.type && (a.type == DeviceType.CPU || Index(a) == Index(b));

    private static int Index(Device d) => d.index < 0 ? 0 : d.index;

    private static string GiB(long bytes) => $"{bytes / (1024.0 * 1024 * 1024):0.##} GiB";

    /// <summary>Bytes of each part: weights from the config's shapes, plus each layer's share of the cache.</summary>
    internal readonly record struct PartBytes(long Embedding, long Layer, long Head, long Total)
    {
        public static PartBytes Of(DecoderConfig c, ScalarType dtype, int batchSize, int capacity, ScalarType cacheDtype)
        {
            long e = dtype.ElementSize();
            long q = (long)c.NumAttentionHeads * c.HeadDim, kv = (long)c.NumKeyValueHeads * c.HeadDim, h = c.HiddenSize;
            long attention = h * q + 2 * h * kv + q * h + (c.QkvBias ? q + 2 * kv : 0) + (c.OutputBias ? h : 0);
            long layerWeights = (attention + 3 * h * c.IntermediateSize + 2 * h) * e;
            long cache = KvCache.EstimateBytes(c, batchSize, capacity, cacheDtype) / c.NumHiddenLayers;
            long embedding = (long)c.VocabSize * h * e, head = h * e + (c.TieWordEmbeddings ? 0 : (long)c.VocabSize * h * e);
            return new PartBytes(embedding, layerWeights + cache, head, embedding + (layerWeights + cache) * c.NumHiddenLayers + head);
        }
    }
}
