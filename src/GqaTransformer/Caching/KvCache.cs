using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>
/// The key/value cache of a decoder, explicit and passed into every forward. For each layer it preallocates K and V
/// of shape [batch, numKvHeads, capacity, headDim]: its size follows the number of key/value heads, never the
/// number of query heads, so a GQA model with 8 KV heads for 32 query heads needs a quarter of an MHA cache.
/// Tokens are written in place at their position; the cache never grows or reallocates. It is made of one part per
/// layer, sized by that layer (ADR 0021): a full-attention layer keeps every token, a sliding layer whose window is
/// shorter than the capacity keeps only its last <c>window</c> tokens, as a ring buffer, so its memory stops growing at
/// the window while generation goes on up to <see cref="Capacity"/> tokens (Gemma 3's five local layers of six cost
/// nothing more past their window; Mistral v0.1's every layer).
/// </summary>
/// <remarks>
/// The cache owns its tensors (they live outside any caller's dispose scope) until <see cref="Dispose"/>.
/// A write that does not fit is rejected before anything is written, so the cache keeps its contents.
/// </remarks>
public sealed class KvCache : IDisposable
{
    private readonly KvCacheLayer?[] _layers;  // per layer: K and V [B, Hkv, slots, D], dense or a ring over the window
    private readonly Device[] _layerDevices;  // each layer's keys and values sit with that layer
    private bool _disposed;

    /// <summary>Allocates a cache for <paramref name="config"/>.</summary>
    /// <param name="config">The model's config (layers, KV heads and head size are taken from it).</param>
    /// <param name="batchSize">Number of sequences decoded together.</param>
    /// <param name="capacity">Most tokens per sequence the cache can hold (prompt plus generated).</param>
    /// <param name="dtype">Element type, float32, bfloat16 or float16. It may differ from the model's dtype: keys and values
    /// are converted as they are written, and attention reads them in this dtype (float32 arithmetic on the CPU). Default float32.</param>
    /// <param name="device">Device; must equal the model's device. Default CPU.</param>
    public KvCache(DecoderConfig config, int batchSize, int capacity, ScalarType dtype = ScalarType.Float32, Device? device = null)
        : this(config, batchSize, capacity, dtype, device, null)
    {
    }

    /// <summary>Allocates a cache whose layers sit on the devices of <paramref name="deviceMap"/>'s layers.</summary>
    /// <param name="config">The model's config (layers, KV heads and head size are taken from it).</param>
    /// <param name="batchSize">Number of sequences decoded together.</param>
    /// <param name="capacity">Most tokens per sequence the cache can hold (prompt plus generated).</param>
    /// <param name="dtype">Element type, float32, bfloat16 or float16.</param>
    /// <param name="deviceMap">The model's device map (<see cref="DecoderModel.DeviceMap"/>).</param>
    public KvCache(DecoderConfig config, int batchSize, int capacity, ScalarType dtype, DeviceMap deviceMap)
        : this(config, batchSize, capacity, dtype, null, deviceMap ?? throw new ArgumentNullException(nameof(deviceMap)))
    {
    }

    private KvCache(DecoderConfig config, int batchSize, int capacity, ScalarType dtype, Device? device, DeviceMap? deviceMap)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        TorchBackend.EnsureLoaded();
        Guard.Positive(batchSize, nameof(batchSize));
        Guard.Positive(capacity, nameof(capacity));
        if (!Guard.IsFloatingPoint(dtype))
            throw new ArgumentException($"dtype must be a floating-point type, but was {dtype}.", nameof(dtype));
        Config = config;
        BatchSize = batchSize;
        Capacity = capacity;
        Dtype = dtype;
        if (deviceMap is not null && deviceMap.Layers.Count != config.NumHiddenLayers)
            throw new ArgumentException($"The device map places {deviceMap.Layers.Count} layers, but the config has {config.NumHiddenLayers}.", nameof(deviceMap));
        _layerDevices = deviceMap?.Layers.ToArray() ?? Enumerable.Repeat(device ?? DefaultDevice(), config.NumHiddenLayers).ToArray();
        Device = _layerDevices[0];
        _layers = new KvCacheLayer?[config.NumHiddenLayers];
        try
        {
            using var scope = NewDisposeScope(); // our own, so no scope another thread disposes ever holds the buffers, even briefly
            for (int layer = 0; layer < config.NumHiddenLayers; layer++)
            {
                long slots = SlotsFor(config, layer, capacity);
                var keys = zeros([batchSize, config.NumKeyValueHeads, slots, config.HeadDim], dtype, _layerDevices[layer]).DetachFromDisposeScope();
                var values = zeros([batchSize, config.NumKeyValueHeads, slots, config.HeadDim], dtype, _layerDevices[layer]).DetachFromDisposeScope();
                _layers[layer] = slots < capacity ? new RingKvLayer(keys, values) : new DenseKvLayer(keys, values);
            }
        }
        catch
        {
            DisposeTensors();
            throw;
        }
    }

    private Tensor? _deviceSlot; // set while a fixed-shape decode step writes at a slot index held on the device
    private long[]? _recorded;   // [B, Capacity] token ids, kept only for a model that must read them again (LongRoPE)

    /// <summary>Keeps the ids [B, T] of the tokens at <paramref name="position"/> (on the host) for <see cref="Recorded"/>.</summary>
    internal void Record(Tensor ids, long position)
    {
        ThrowIfDisposed();
        _recorded ??= new long[(long)BatchSize * Capacity];
        using var scope = NewDisposeScope();
        var host = ids.to(ScalarType.Int64).cpu().contiguous().data<long>().ToArray();
        long tokens = ids.size(1);
        for (int b = 0; b < BatchSize; b++)
            Array.Copy(host, b * tokens, _recorded, b * (long)Capacity + position, tokens);
    }

    /// <summary>The recorded ids of the first <paramref name="length"/> tokens, [B, length] on the CPU.</summary>
    internal Tensor Recorded(long length)
    {
        var ids = new long[BatchSize * length];
        for (int b = 0; b < BatchSize; b++) Array.Copy(_recorded!, b * (long)Capacity, ids, b * length, length);
        return tensor(ids).view(BatchSize, length);
    }

    private static Device DefaultDevice() => CPU; // not inline: the constructor checks the backend before touching TorchSharp

    /// <summary>The config the cache was made for.</summary>
    public DecoderConfig Config { get; }

    /// <summary>Number of sequences.</summary>
    public int BatchSize { get; }

    /// <summary>Most tokens per sequence the cache can take (prompt plus generated).</summary>
    public int Capacity { get; }

    /// <summary>
    /// Token slots allocated per sequence for <paramref name="layer"/>: <see cref="Capacity"/>, or the layer's sliding
    /// window where it is smaller (then the slots form a ring buffer).
    /// </summary>
    public int SlotsOf(int layer) => (int)Part(layer).Slots;

    /// <summary>The slots of the smallest ring-buffer layer, or <see cref="long.MaxValue"/> when no layer is a ring.</summary>
    internal long SmallestRing => _layers.Where(l => l!.IsRing).Select(l => l!.Slots).DefaultIfEmpty(long.MaxValue).Min();

    /// <summary>Whether some layer keeps only its sliding window, as a ring buffer.</summary>
    public bool IsRingBuffer => _layers.Any(l => l!.IsRing);

    /// <summary>Tokens written and committed so far (the same for every sequence of the batch).</summary>
    public int Length { get; private set; }

    /// <summary>Element type of the cached keys and values.</summary>
    public ScalarType Dtype { get; }

    /// <summary>Device the cache lives on: its first layer's, and every layer's unless it was made from a <see cref="DeviceMap"/>.</summary>
    public Device Device { get; }

    /// <summary>
    /// Bytes held: exactly 2 · batch · kvHeads · headDim · element size · Σ over layers of its slots (the capacity, or
    /// the layer's sliding window where that is smaller).
    /// </summary>
    public long SizeInBytes => EstimateBytes(Config, BatchSize, Capacity, Dtype);

    /// <summary>Every tensor the cache owns (K then V for each layer), for inspection.</summary>
    public IEnumerable<Tensor> Tensors
    {
        get
        {
            ThrowIfDisposed();
            foreach (var part in _layers)
            {
                yield return part!.Keys;
                yield return part.Values;
            }
        }
    }

    /// <summary>
    /// Bytes a cache for <paramref name="tokens"/> tokens would take: 2 (K and V) · batch · kvHeads · headDim · element
    /// size · Σ over layers of the tokens each keeps (all of them, or at most its sliding window). Nothing is allocated.
    /// </summary>
    public static long EstimateBytes(DecoderConfig config, int batchSize, long tokens, ScalarType dtype)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        if (batchSize <= 0) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "batchSize must be positive.");
        if (tokens < 0) throw new ArgumentOutOfRangeException(nameof(tokens), tokens, "tokens must not be negative.");
        long held = 0;
        foreach (var (window, layers) in WindowCounts(config))
            held = checked(held + layers * (window is { } w ? Math.Min(tokens, w) : tokens));
        return checked(2L * batchSize * config.NumKeyValueHeads * config.HeadDim * dtype.ElementSize() * held);
    }

    /// <summary>
    /// The most tokens per sequence whose cache fits in <paramref name="budgetBytes"/>, or <see cref="long.MaxValue"/>
    /// when every layer slides and the windows fit (the cache then never grows past them).
    /// </summary>
    public static long MaxTokensForBudget(DecoderConfig config, int batchSize, long budgetBytes, ScalarType dtype)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (budgetBytes < 0) throw new ArgumentOutOfRangeException(nameof(budgetBytes), budgetBytes, "budgetBytes must not be negative.");
        var counts = WindowCounts(config);
        long largestWindow = counts.Max(c => c.Window ?? 0);
        if (counts.All(c => c.Window is not null) && EstimateBytes(config, batchSize, largestWindow, dtype) <= budgetBytes)
            return long.MaxValue;
        long fullLayers = counts.Where(c => c.Window is null).Sum(c => c.Layers);
        long perTokenFull = 2L * batchSize * config.NumKeyValueHeads * config.HeadDim * dtype.ElementSize() * fullLayers;
        long low = 0, high = (fullLayers == 0 ? 0 : budgetBytes / perTokenFull) + largestWindow + 1; // bytes(t) grows with t: bisect
        high = Math.Min(high, long.MaxValue / 2);
        while (low < high)
        {
            long mid = low + (high - low + 1) / 2;
            if (EstimateBytes(config, batchSize, mid, dtype) <= budgetBytes) low = mid; else high = mid - 1;
        }
        return low;
    }

    /// <summary>How many layers have each window (null: full attention); a few entries even for many layers.</summary>
    private static List<(int? Window, long Layers)> WindowCounts(DecoderConfig config)
    {
        if (config.LayerTypes is null && config.NumHiddenLayers > 4096)   // a hostile layer count: count by the family's period
            throw new ArgumentException($"num_hidden_layers ({config.NumHiddenLayers}) is more than the cache estimate counts (4096).", nameof(config));
        return [.. Enumerable.Range(0, config.NumHiddenLayers).GroupBy(config.WindowOf).Select(g => (g.Key, (long)g.Count()))];
    }

    private static long SlotsFor(DecoderConfig config, int layer, int capacity)
        => config.WindowOf(layer) is { } window && window < capacity ? window : capacity;

    private KvCacheLayer Part(int layer)
    {
        ThrowIfDisposed();
        if (layer < 0 || layer >= _layers.Length)
            throw new ArgumentOutOfRangeException(nameof(layer), layer, $"layer must be in [0, {_layers.Length}).");
        return _layers[layer]!;
    }

    /// <summary>
    /// The committed keys and values of <paramref name="layer"/>: views [B, Hkv, min(Length, Slots), D], not copies.
    /// In a ring buffer the slots are in ring order; <see cref="SlotPositionsOf"/> says which token each holds.
    /// </summary>
    public (Tensor Keys, Tensor Values) Layer(int layer)
    {
        var part = Part(layer);
        long filled = Math.Min(Length, part.Slots);
        return (part.Keys.narrow(2, 0, filled), part.Values.narrow(2, 0, filled));
    }

    /// <summary>The absolute position of the token in each filled slot of <paramref name="layer"/> (0, 1, 2, … unless it is a ring).</summary>
    public IReadOnlyList<long> SlotPositionsOf(int layer) => Part(layer).SlotPositions(Length);

    /// <summary>Forgets every token (the memory stays allocated and is reused).</summary>
    public void Reset()
    {
        ThrowIfDisposed();
        Length = 0;
    }

    /// <summary>
    /// Forgets every token from position <paramref name="length"/> on, keeping the first <paramref name="length"/>: a chat
    /// that changes its history from there re-reads only what follows. A ring buffer (sliding window) that has wrapped
    /// no longer holds the early tokens, so it can only keep all or none.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="length"/> is negative or above <see cref="Length"/>.</exception>
    /// <exception cref="InvalidOperationException">A wrapped ring buffer asked to keep part of its tokens.</exception>
    public void RewindTo(int length)
    {
        ThrowIfDisposed();
        if (length < 0 || length > Length)
            throw new ArgumentOutOfRangeException(nameof(length), length, $"length must be in [0, {Length}] (the tokens the cache holds).");
        if (length == Length) return;
        if (!CanRewindTo(length))
            throw new InvalidOperationException(
                $"A sliding-window layer of this cache has wrapped ({Length} tokens in {_layers.Min(l => l!.Slots)} slots), so it cannot keep only the first {length}; rewind to 0.");
        Length = length;
    }

    /// <summary>
    /// Whether <see cref="RewindTo"/> can keep the first <paramref name="length"/> tokens: any length in [0, Length],
    /// except that a sliding-window ring that has wrapped no longer holds its first tokens, so it rewinds only to 0 or to
    /// where it is. When it cannot, prefill the tokens to keep again after <see cref="Reset"/>.
    /// </summary>
    public bool CanRewindTo(int length)
        => !_disposed && length >= 0 && length <= Length && _layers.All(l => l!.CanKeep(Length, length));

    /// <summary>
    /// Commits <paramref name="tokens"/> tokens written by every layer since the last commit. <see cref="DecoderModel"/>
    /// calls this after each forward; call it yourself only when driving <see cref="MultiHeadAttention"/> directly.
    /// </summary>
    public void Advance(int tokens)
    {
        EnsureRoom(tokens);
        Length += tokens;
    }

    /// <summary>
    /// Absolute positions of the keys that <see cref="Write"/> will return for <paramref name="layer"/> and
    /// <paramref name="tokens"/> new tokens, or null when they are simply 0 .. Length + tokens - 1 in order (no ring).
    /// </summary>
    internal long[]? KeyPositions(int layer, long tokens) => Part(layer).KeyPositions(Length, tokens);

    /// <summary>Throws, changing nothing, unless <paramref name="tokens"/> more tokens fit.</summary>
    internal void EnsureRoom(long tokens)
    {
        ThrowIfDisposed();
        if (tokens < 0)
            throw new ArgumentOutOfRangeException(nameof(tokens), tokens, "tokens must not be negative.");
        if (Length + tokens > Capacity)
            throw new InvalidOperationException(
                $"The KV cache holds {Length} of {Capacity} tokens; {tokens} more do not fit. Create the cache with a larger capacity or call Reset().");
    }

    /// <summary>Throws unless this cache fits a model of <paramref name="config"/> fed <paramref name="batchSize"/> sequences.</summary>
    internal void EnsureCompatible(DecoderConfig config, long batchSize, IReadOnlyList<Device> layerDevices)
    {
        ThrowIfDisposed();
        if (config.NumHiddenLayers != Config.NumHiddenLayers || config.NumKeyValueHeads != Config.NumKeyValueHeads || config.HeadDim != Config.HeadDim)
            throw new ArgumentException(
                $"The cache was made for {Config.NumHiddenLayers} layers × {Config.NumKeyValueHeads} KV heads × head_dim {Config.HeadDim}, but the model has {config.NumHiddenLayers} × {config.NumKeyValueHeads} × {config.HeadDim}.",
                "cache");
        for (int layer = 0; layer < layerDevices.Count; layer++)
            EnsureCompatibleLayer(layer, config.NumKeyValueHeads, config.HeadDim, batchSize, layerDevices[layer], config.WindowOf(layer));
    }

    /// <summary>Throws unless layer <paramref name="layer"/> of this cache fits an attention of the given shape.</summary>
    internal void EnsureCompatibleLayer(int layer, int kvHeads, int headDim, long batchSize, Device device, int? window = null)
    {
        ThrowIfDisposed();
        if (layer < 0 || layer >= _layers.Length)
            throw new ArgumentException($"The attention uses cache layer {layer}, but the cache has {_layers.Length} layers.", "cache");
        if (window != Config.WindowOf(layer))
            throw new ArgumentException(
                $"Cache layer {layer} was made for window {Config.WindowOf(layer)?.ToString() ?? "none"}, but the attention slides over {window?.ToString() ?? "none"}.", "cache");
        if (kvHeads != Config.NumKeyValueHeads || headDim != Config.HeadDim)
            throw new ArgumentException(
                $"The cache holds {Config.NumKeyValueHeads} KV heads × head_dim {Config.HeadDim}, but the attention has {kvHeads} × {headDim}.", "cache");
        if (batchSize != BatchSize)
            throw new ArgumentException($"The cache was made for batch size {BatchSize}, but the input has batch size {batchSize}.", "cache");
        if (!DeviceMap.Same(device, _layerDevices[layer]))
            throw new ArgumentException(layer == 0 && _layerDevices.All(d => DeviceMap.Same(d, Device))
                ? $"The cache is on {Device}, but the model is on {device}."
                : $"The cache holds layer {layer} on {_layerDevices[layer]}, but the model runs it on {device}.", "cache");
    }

    /// <summary>
    /// Writes keys and values [B, Hkv, T, D] of one layer at positions [Length, Length + T) and returns views of
    /// everything that layer now holds, [B, Hkv, S, D]. <see cref="Length"/> does not move until <see cref="Advance"/>.
    /// </summary>
    internal (Tensor Keys, Tensor Values) Write(int layer, Tensor keys, Tensor values)
    {
        var part = Part(layer);
        var stored = part.Keys;
        if (keys.dim() != 4 || keys.size(0) != stored.size(0) || keys.size(1) != stored.size(1) || keys.size(3) != stored.size(3)
            || !Guard.SameShape(keys, values))
            throw new ArgumentException(
                $"keys and values must be [{stored.size(0)}, {stored.size(1)}, T, {stored.size(3)}], but are {Guard.Shape(keys)} and {Guard.Shape(values)}.",
                nameof(keys));
        EnsureRoom(keys.size(2));
        (keys, values) = (keys.to(Dtype), values.to(Dtype));                         // the cache's dtype may differ from the model's
        if (_deviceSlot is not null && keys.size(2) == 1)
        {
            part.Keys.index_copy_(2, _deviceSlot, keys);
            part.Values.index_copy_(2, _deviceSlot, values);
            return (part.Keys, part.Values);                                        // [B, Hkv, Capacity, D]: the caller masks
        }
        return part.Write(Length, keys, values);
    }

    /// <summary>
    /// While the returned scope lives, a one-token <see cref="Write"/> goes to the slot whose index <paramref name="slot"/>
    /// (one int64 on the cache's device) holds, and returns the whole buffers, [B, Hkv, Capacity, D]: fixed shapes and no
    /// value read by the host, as a captured CUDA graph needs. The caller masks the slots not written yet, moves the
    /// index on the device, and commits each step with <see cref="Advance"/>.
    /// </summary>
    internal IDisposable WritingAtDeviceSlot(Tensor slot)
    {
        ThrowIfDisposed();
        if (IsRingBuffer) throw new InvalidOperationException("A cache with a ring-buffer layer cannot be written at a device-held slot.");
        _deviceSlot = slot;
        return new SlotScope(this);
    }

    private sealed class SlotScope(KvCache cache) : IDisposable
    {
        public void Dispose() => cache._deviceSlot = null;
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    private void DisposeTensors()
    {
        foreach (var part in _layers) part?.Dispose();
    }

    /// <summary>Frees the cache's native memory.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        DisposeTensors();
    }
}
