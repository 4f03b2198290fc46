using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>
/// The key/value cache of a decoder, explicit and passed into every forward. For each layer it preallocates K and V
/// of shape [batch, numKvHeads, capacity, headDim]: its size follows the number of key/value heads, never the
/// number of query heads, so a GQA model with 8 KV heads for 32 query heads needs a quarter of an MHA cache.
/// Tokens are written in place at <see cref="Length"/>; the cache never grows or reallocates.
/// For a sliding-window model (Mistral's <c>sliding_window</c>) whose capacity exceeds the window, the cache holds
/// only the last <c>window</c> tokens, as a ring buffer: memory stops growing at the window while generation goes on
/// up to <see cref="Capacity"/> tokens.
/// </summary>
/// <remarks>
/// The cache owns its tensors (they live outside any caller's dispose scope) until <see cref="Dispose"/>.
/// A write that does not fit is rejected before anything is written, so the cache keeps its contents.
/// </remarks>
public sealed class KvCache : IDisposable
{
    private readonly Tensor[] _keys;   // per layer [B, Hkv, Slots, D]
    private readonly Tensor[] _values; // per layer [B, Hkv, Slots, D]
    private readonly Device[] _layerDevices; // each layer's keys and values sit with that layer
    private readonly long[] _slotPositions; // absolute position held by each slot, -1 when empty (same for every layer)
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
        Slots = SlotsFor(config, capacity);
        _slotPositions = Enumerable.Repeat(-1L, Slots).ToArray();
        _keys = new Tensor[config.NumHiddenLayers];
        _values = new Tensor[config.NumHiddenLayers];
        try
        {
            using var scope = NewDisposeScope(); // our own, so no scope another thread disposes ever holds the buffers, even briefly
            for (int layer = 0; layer < config.NumHiddenLayers; layer++)
            {
                _keys[layer] = zeros([batchSize, config.NumKeyValueHeads, Slots, config.HeadDim], dtype, _layerDevices[layer]).DetachFromDisposeScope();
                _values[layer] = zeros([batchSize, config.NumKeyValueHeads, Slots, config.HeadDim], dtype, _layerDevices[layer]).DetachFromDisposeScope();
            }
        }
        catch
        {
            DisposeTensors();
            throw;
        }
    }

    private Tensor? _deviceSlot; // set while a fixed-shape decode step writes at a slot index held on the device

    private static Device DefaultDevice() => CPU; // not inline: the constructor checks the backend before touching TorchSharp

    /// <summary>The config the cache was made for.</summary>
    public DecoderConfig Config { get; }

    /// <summary>Number of sequences.</summary>
    public int BatchSize { get; }

    /// <summary>Most tokens per sequence the cache can take (prompt plus generated).</summary>
    public int Capacity { get; }

    /// <summary>
    /// Token slots allocated per sequence: <see cref="Capacity"/>, or the sliding window when the model has one that is
    /// smaller (then the slots form a ring buffer).
    /// </summary>
    public int Slots { get; }

    /// <summary>Whether the cache is a ring buffer over the model's sliding window.</summary>
    public bool IsRingBuffer => Slots < Capacity;

    /// <summary>Tokens written and committed so far (the same for every sequence of the batch).</summary>
    public int Length { get; private set; }

    /// <summary>Element type of the cached keys and values.</summary>
    public ScalarType Dtype { get; }

    /// <summary>Device the cache lives on: its first layer's, and every layer's unless it was made from a <see cref="DeviceMap"/>.</summary>
    public Device Device { get; }

    /// <summary>
    /// Bytes held: exactly 2 · layers · batch · kvHeads · slots · headDim · element size, where slots is the capacity
    /// (or the sliding window, if the model has a smaller one).
    /// </summary>
    public long SizeInBytes => EstimateBytes(Config, BatchSize, Capacity, Dtype);

    /// <summary>Every tensor the cache owns (K then V for each layer), for inspection.</summary>
    public IEnumerable<Tensor> Tensors
    {
        get
        {
            ThrowIfDisposed();
            for (int layer = 0; layer < _keys.Length; layer++)
            {
                yield return _keys[layer];
                yield return _values[layer];
            }
        }
    }

    /// <summary>
    /// Bytes a cache for <paramref name="tokens"/> tokens would take:
    /// 2 (K and V) · layers · batch · kvHeads · tokens · headDim · element size, with tokens capped at the sliding
    /// window for models that have one. Nothing is allocated.
    /// </summary>
    public static long EstimateBytes(DecoderConfig config, int batchSize, long tokens, ScalarType dtype)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (batchSize <= 0) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "batchSize must be positive.");
        if (tokens < 0) throw new ArgumentOutOfRangeException(nameof(tokens), tokens, "tokens must not be negative.");
        long slots = config.SlidingWindow is { } window ? Math.Min(tokens, window) : tokens;
        return 2L * config.NumHiddenLayers * batchSize * config.NumKeyValueHeads * slots * config.HeadDim * dtype.ElementSize();
    }

    /// <summary>
    /// The most tokens per sequence whose cache fits in <paramref name="budgetBytes"/>, or <see cref="long.MaxValue"/>
    /// when the model's sliding window caps the cache below the budget (it never grows past the window).
    /// </summary>
    public static long MaxTokensForBudget(DecoderConfig config, int batchSize, long budgetBytes, ScalarType dtype)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (budgetBytes < 0) throw new ArgumentOutOfRangeException(nameof(budgetBytes), budgetBytes, "budgetBytes must not be negative.");
        long perToken = EstimateBytes(config, batchSize, 1, dtype);
        long tokens = budgetBytes / perToken;
        return config.SlidingWindow is { } window && tokens >= window ? long.MaxValue : tokens;
    }

    private static int SlotsFor(DecoderConfig config, int capacity)
        => config.SlidingWindow is { } window && window < capacity ? window : capacity;

    /// <summary>
    /// The committed keys and values of <paramref name="layer"/>: views [B, Hkv, min(Length, Slots), D], not copies.
    /// In a ring buffer the slots are in ring order; <see cref="SlotPositions"/> says which token each holds.
    /// </summary>
    public (Tensor Keys, Tensor Values) Layer(int layer)
    {
        ThrowIfDisposed();
        if (layer < 0 || layer >= _keys.Length)
            throw new ArgumentOutOfRangeException(nameof(layer), layer, $"layer must be in [0, {_keys.Length}).");
        int filled = Math.Min(Length, Slots);
        return (_keys[layer].narrow(2, 0, filled), _values[layer].narrow(2, 0, filled));
    }

    /// <summary>The absolute position of the token in each filled slot (0, 1, 2, … unless the cache is a ring).</summary>
    public IReadOnlyList<long> SlotPositions => _slotPositions.Take(Math.Min(Length, Slots)).ToArray();

    /// <summary>Forgets every token (the memory stays allocated and is reused).</summary>
    public void Reset()
    {
        ThrowIfDisposed();
        Length = 0;
        Array.Fill(_slotPositions, -1L);
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
            throw new InvalidOperationException($"This sliding-window cache has wrapped ({Length} tokens in {Slots} slots), so it cannot keep only the first {length}; rewind to 0.");
        if (length == 0) { Reset(); return; }
        for (int slot = length; slot < Math.Min(Length, Slots); slot++) _slotPositions[slot] = -1;
        Length = length;
    }

    /// <summary>
    /// Whether <see cref="RewindTo"/> can keep the first <paramref name="length"/> tokens: any length in [0, Length],
    /// except that a sliding-window ring that has wrapped no longer holds its first tokens, so it rewinds only to 0 or to
    /// where it is. When it cannot, prefill the tokens to keep again after <see cref="Reset"/>.
    /// </summary>
    public bool CanRewindTo(int length)
        => length >= 0 && length <= Length && (length == Length || length == 0 || !(IsRingBuffer && Length > Slots));

    /// <summary>
    /// Commits <paramref name="tokens"/> tokens written by every layer since the last commit. <see cref="DecoderModel"/>
    /// calls this after each forward; call it yourself only when driving <see cref="MultiHeadAttention"/> directly.
    /// </summary>
    public void Advance(int tokens)
    {
        EnsureRoom(tokens);
        for (long position = Math.Max(Length, Length + tokens - Slots); position < Length + tokens; position++)
            _slotPositions[position % Slots] = position;
        Length += tokens;
    }

    /// <summary>
    /// Absolute positions of the keys that <see cref="Write"/> will return for <paramref name="tokens"/> new tokens,
    /// or null when they are simply 0 .. Length + tokens - 1 in order (no ring buffer).
    /// </summary>
    internal long[]? KeyPositions(long tokens)
    {
        if (!IsRingBuffer) return null;
        int filled = Math.Min(Length, Slots);
        if (tokens == 1)
        {
            var after = _slotPositions.Take(Math.Min(Length + 1, Slots)).ToArray();
            after[Length % Slots] = Length;
            return after;
        }
        var positions = new long[filled + tokens];
        Array.Copy(_slotPositions, positions, filled);
        for (long t = 0; t < tokens; t++) positions[filled + t] = Length + t;
        return positions;
    }

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
            EnsureCompatibleLayer(layer, config.NumKeyValueHeads, config.HeadDim, batchSize, layerDevices[layer]);
    }

    /// <summary>Throws unless layer <paramref name="layer"/> of this cache fits an attention of the given shape.</summary>
    internal void EnsureCompatibleLayer(int layer, int kvHeads, int headDim, long batchSize, Device device)
    {
        ThrowIfDisposed();
        if (layer < 0 || layer >= _keys.Length)
            throw new ArgumentException($"The attention uses cache layer {layer}, but the cache has {_keys.Length} layers.", "cache");
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
    /// everything that layer now holds, [B, Hkv, Length + T, D]. <see cref="Length"/> does not move until
    /// <see cref="Advance"/>.
    /// </summary>
    internal (Tensor Keys, Tensor Values) Write(int layer, Tensor keys, Tensor values)
    {
        ThrowIfDisposed();
        if (layer < 0 || layer >= _keys.Length)
            throw new ArgumentOutOfRangeException(nameof(layer), layer, $"layer must be in [0, {_keys.Length}).");
        var stored = _keys[layer];
        if (keys.dim() != 4 || keys.size(0) != stored.size(0) || keys.size(1) != stored.size(1) || keys.size(3) != stored.size(3)
            || !Guard.SameShape(keys, values))
            throw new ArgumentException(
                $"keys and values must be [{stored.size(0)}, {stored.size(1)}, T, {stored.size(3)}], but are {Guard.Shape(keys)} and {Guard.Shape(values)}.",
                nameof(keys));
        EnsureRoom(keys.size(2));
        long tokens = keys.size(2);
        (keys, values) = (keys.to(Dtype), values.to(Dtype));                         // the cache's dtype may differ from the model's
        if (_deviceSlot is not null && tokens == 1)
        {
            _keys[layer].index_copy_(2, _deviceSlot, keys);
            _values[layer].index_copy_(2, _deviceSlot, values);
            return (_keys[layer], _values[layer]);                                  // [B, Hkv, Capacity, D]: the caller masks
        }
        if (!IsRingBuffer)
        {
            _keys[layer].narrow(2, Length, tokens).copy_(keys);
            _values[layer].narrow(2, Length, tokens).copy_(values);
            return (_keys[layer].narrow(2, 0, Length + tokens), _values[layer].narrow(2, 0, Length + tokens));
        }

        int filled = Math.Min(Length, Slots);
        if (tokens == 1)
        {
            // Decode: overwrite the oldest slot, then attend over the ring in place (its order does not matter:
            // keys are stored already rotated, and the mask knows each slot's position).
            long slot = Length % Slots;
            _keys[layer].narrow(2, slot, 1).copy_(keys);
            _values[layer].narrow(2, slot, 1).copy_(values);
            long used = Math.Min(Length + 1, Slots);
            return (_keys[layer].narrow(2, 0, used), _values[layer].narrow(2, 0, used));
        }

        // A block of tokens: attend over what the ring holds plus the whole block (a temporary for this forward),
        // then keep the block's last Slots tokens in the ring.
        var allKeys = cat([_keys[layer].narrow(2, 0, filled), keys], 2);
        var allValues = cat([_values[layer].narrow(2, 0, filled), values], 2);
        long keep = Math.Min(tokens, Slots);
        for (long t = tokens - keep; t < tokens;)
        {
            long slot = (Length + t) % Slots;
            long run = Math.Min(tokens - t, Slots - slot); // contiguous up to the end of the ring
            _keys[layer].narrow(2, slot, run).copy_(keys.narrow(2, t, run));
            _values[layer].narrow(2, slot, run).copy_(values.narrow(2, t, run));
            t += run;
        }
        return (allKeys, allValues);
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
        if (IsRingBuffer) throw new InvalidOperationException("A ring-buffer cache cannot be written at a device-held slot.");
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
        foreach (var t in _keys) t?.Dispose();
        foreach (var t in _values) t?.Dispose();
    }

    /// <summary>Frees the cache's native memory.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        DisposeTensors();
    }
}
