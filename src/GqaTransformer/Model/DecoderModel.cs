using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>
/// A decoder-only language model in the Llama layout (also Mistral and Qwen2): token embedding, a stack of
/// <see cref="DecoderLayer"/>s, a final <see cref="RmsNorm"/> and the <c>lm_head</c>. Its state-dict keys are
/// HuggingFace's (<c>model.embed_tokens.weight</c>, <c>model.layers.0.self_attn.q_proj.weight</c>, …,
/// <c>lm_head.weight</c>), so hub checkpoints load by name. The KV cache is explicit:
/// <c>logits = model.forward(ids, cache)</c> serves prefill (many tokens) and decode (one token) alike.
/// </summary>
public sealed class DecoderModel : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "model")] private readonly DecoderStack _model;
    [ComponentName(Name = "lm_head")] private readonly Linear? _lmHead;

    /// <summary>Creates a randomly initialised model for <paramref name="config"/>, directly on a device and dtype.</summary>
    /// <param name="config">The model's config (validated here).</param>
    /// <param name="dtype">Element type of the weights (default float32).</param>
    /// <param name="device">Device of the weights (default CPU).</param>
    public DecoderModel(DecoderConfig config, ScalarType? dtype = null, Device? device = null)
        : this(config, dtype, DeviceMap.Single(device ?? CPU, CheckedLayers(config)), mapped: false)
    {
    }

    /// <summary>Creates a randomly initialised model spread over devices: each part where <paramref name="deviceMap"/> puts it.</summary>
    /// <param name="config">The model's config (validated here).</param>
    /// <param name="dtype">Element type of the weights (default float32).</param>
    /// <param name="deviceMap">Device of the embedding, of each layer and of the head (<see cref="GqaTransformer.DeviceMap"/>).</param>
    public DecoderModel(DecoderConfig config, ScalarType? dtype, DeviceMap deviceMap)
        : this(config, dtype, deviceMap ?? throw new ArgumentNullException(nameof(deviceMap)), mapped: true)
    {
    }

    private DecoderModel(DecoderConfig config, ScalarType? dtype, DeviceMap deviceMap, bool mapped) : base(TorchBackend.Checked("decoder"))
    {
        Config = config.Validate();
        if (dtype is { } requested && !Guard.IsFloatingPoint(requested))
            throw new ArgumentException($"dtype must be a floating-point type, but was {requested}.", nameof(dtype));
        if (deviceMap.Layers.Count != config.NumHiddenLayers)
            throw new ArgumentException($"The device map places {deviceMap.Layers.Count} layers, but the model has {config.NumHiddenLayers}.", nameof(deviceMap));
        _map = deviceMap;
        _mapped = mapped && !deviceMap.IsSingleDevice;
        _model = new DecoderStack(config, deviceMap, dtype);
        _lmHead = config.TieWordEmbeddings ? null : nn.Linear(config.HiddenSize, config.VocabSize, hasBias: false, deviceMap.Head, dtype);
        RegisterComponents();
    }

    private static int CheckedLayers(DecoderConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        return config.Validate().NumHiddenLayers;
    }

    private readonly DeviceMap _map;
    private readonly bool _mapped;

    /// <summary>
    /// Where the embedding, each layer and the head live: the map the model was made with, or else every part on
    /// <see cref="Device"/> (which follows <c>to(device)</c>; a model made with a map is not moved as a whole).
    /// </summary>
    public DeviceMap DeviceMap => MapOn(Device);

    /// <summary>The map, given the device the unmapped model's weights are on (read once per forward).</summary>
    private DeviceMap MapOn(Device device) => _mapped ? _map : DeviceMap.Single(device, Config.NumHiddenLayers);

    /// <summary>Whether the model spans several devices, so activations move between them and CUDA graphs are not used.</summary>
    internal bool IsDeviceMapped => _mapped;

    /// <summary>Frees the weights, and gives the native heap's freed pages back to the system (ADR 0019).</summary>
    protected override void Dispose(bool disposing)
    {
        base.Dispose(disposing);
        if (disposing) NativeHeap.Trim();
    }

    /// <summary>
    /// Loads a HuggingFace checkpoint directory: <c>config.json</c> and <c>model.safetensors</c> (or the shards listed
    /// in <c>model.safetensors.index.json</c>). Llama, Mistral and Qwen2 families. Weights stream tensor by tensor
    /// into the model, converted to <paramref name="dtype"/> (float32, bfloat16 or float16; the file's own dtype does
    /// not matter). Before any module is built, config.json is checked against the file headers: every tensor it
    /// implies must be there by name, shape and floating-point dtype, and nothing else, so a config can ask for no
    /// more than the files hold. On any error nothing is returned.
    /// </summary>
    /// <param name="directory">The checkpoint directory.</param>
    /// <param name="dtype">Element type of the model. Default float32.</param>
    /// <param name="device">Device of the model. Default CPU.</param>
    /// <exception cref="DirectoryNotFoundException">No such directory.</exception>
    /// <exception cref="FileNotFoundException">config.json, the weights or a listed shard is missing.</exception>
    /// <exception cref="InvalidDataException">
    /// A corrupt or truncated file (tensors whose bytes overlap or leave gaps included), an index that disagrees with its
    /// shards, or a missing, unexpected or misshapen tensor; the message names the file, the tensor and both shapes.
    /// </exception>
    /// <exception cref="NotSupportedException">An architecture, model type or RoPE type this library does not run.</exception>
    public static DecoderModel FromPretrained(string directory, ScalarType dtype = ScalarType.Float32, Device? device = null)
    {
        TorchBackend.EnsureLoaded(); // before anything touches TorchSharp, so a missing backend gets a message that says so
        return PretrainedCheckpoint.Load(directory, dtype, device, null);
    }

    /// <summary>
    /// Loads a HuggingFace checkpoint directory as <see cref="FromPretrained(string, ScalarType, Device?)"/> does, each
    /// part onto the device <paramref name="deviceMap"/> gives it (<see cref="GqaTransformer.DeviceMap.Auto"/> fits one to
    /// the GPUs' free memory). Weights stream from the file straight to their device.
    /// </summary>
    /// <param name="directory">The checkpoint directory.</param>
    /// <param name="dtype">Element type of the model.</param>
    /// <param name="deviceMap">Device of the embedding, of each layer and of the head; its layer count must be the config's.</param>
    /// <exception cref="ArgumentException">The map places another number of layers than the checkpoint has.</exception>
    public static DecoderModel FromPretrained(string directory, ScalarType dtype, DeviceMap deviceMap)
    {
        ArgumentNullException.ThrowIfNull(deviceMap);
        TorchBackend.EnsureLoaded();
        return PretrainedCheckpoint.Load(directory, dtype, null, deviceMap);
    }

    /// <summary>
    /// Writes the model as a HuggingFace checkpoint: <c>config.json</c> (classic layout) and <c>model.safetensors</c>,
    /// or shards of at most <paramref name="maxShardBytes"/> with <c>model.safetensors.index.json</c>.
    /// transformers' <c>from_pretrained</c> loads it, and <see cref="FromPretrained(string, ScalarType, Device?)"/> reads it back bit for bit.
    /// </summary>
    public void SavePretrained(string directory, long maxShardBytes = 5_000_000_000)
        => PretrainedCheckpoint.Save(this, directory, maxShardBytes);

    /// <summary>The config the model was built from.</summary>
    public DecoderConfig Config { get; }

    /// <summary>The decoder layers, in order.</summary>
    public IReadOnlyList<DecoderLayer> Layers => _model.Layers;

    /// <summary>Element type of the model's parameters.</summary>
    public ScalarType Dtype
    {
        get
        {
            using var scope = NewDisposeScope(); // TorchSharp's weight getter may hand out a fresh native handle
            return _model.EmbedTokens.weight!.dtype;
        }
    }

    /// <summary>Device of the model's parameters.</summary>
    public Device Device
    {
        get
        {
            using var scope = NewDisposeScope();
            return _model.EmbedTokens.weight!.device;
        }
    }

    /// <summary>Creates a <see cref="KvCache"/> on this model's device, in this model's dtype unless <paramref name="dtype"/> says otherwise.</summary>
    /// <param name="batchSize">Number of sequences decoded together.</param>
    /// <param name="capacity">Most tokens per sequence (prompt plus generated).</param>
    /// <param name="dtype">
    /// Element type of the cache (float32, bfloat16 or float16); default the model's. A bfloat16 cache halves a float32
    /// model's cache; a float32 cache keeps a half-precision model's keys and values unrounded.
    /// </param>
    public KvCache CreateCache(int batchSize, int capacity, ScalarType? dtype = null) => new(Config, batchSize, capacity, dtype ?? Dtype, DeviceMap);

    /// <summary>Logits [B, T, vocab] for token ids [B, T] at positions 0..T-1, no cache.</summary>
    public override Tensor forward(Tensor inputIds) => forward(inputIds, cache: null);

    /// <summary>
    /// Logits for <paramref name="inputIds"/> [B, T] that follow the cache's committed tokens. With a cache, the
    /// tokens' keys and values are written into it and committed (its Length grows by T) once the forward succeeds.
    /// Bad arguments, and tokens that do not fit, throw before anything is written. A forward that fails later leaves
    /// Length as it was, so its writes are not counted; but in a sliding-window ring that has wrapped they may have
    /// overwritten the oldest tokens still counted, so such a cache must be prefilled again (<see cref="KvCache.Reset"/>).
    /// </summary>
    /// <param name="inputIds">Token ids [B, T], int64 (int32 accepted), each in [0, vocab).</param>
    /// <param name="cache">Optional KV cache from <see cref="CreateCache"/>; null attends within inputIds only.</param>
    /// <param name="attentionMask">Optional [B, past + T] mask, 1 for tokens and 0 for padding, as in transformers.</param>
    /// <param name="positionIds">Optional [B, T] positions; default past..past+T-1 for every row, as in transformers.</param>
    /// <param name="lastTokenOnly">Return logits of the last position only ([B, 1, vocab]); saves the lm_head over the prompt.</param>
    /// <returns>Logits [B, T, vocab] (or [B, 1, vocab]) in the model's dtype.</returns>
    public Tensor forward(Tensor inputIds, KvCache? cache, Tensor? attentionMask = null, Tensor? positionIds = null, bool lastTokenOnly = false)
    {
        long past = cache?.Length ?? 0;
        var device = Device; // each read asks libtorch; once per forward is enough
        var (batch, tokens) = CheckInputs(inputIds, cache, attentionMask, positionIds, past, device);
        using var scope = NewDisposeScope();
        using var noGrad = cache is not null ? no_grad() : null;
        var ids = inputIds.dtype == ScalarType.Int64 ? inputIds : inputIds.to(ScalarType.Int64);
        positionIds ??= arange(past, past + tokens, ScalarType.Int64, device).unsqueeze(0).expand(batch, -1); // [B, T]
        var mask = AttentionMask.Build(tokens, past, cache?.KeyPositions(tokens), attentionMask, Config.SlidingWindow, device); // [B, 1, T, S] or null

        var hidden = _model.forward(ids, positionIds, mask, cache);                 // [B, T, hidden]
        if (lastTokenOnly) hidden = hidden.narrow(1, tokens - 1, 1);                // [B, 1, hidden]
        var logits = Head(hidden);                                                  // [B, T, vocab]
        cache?.Advance((int)tokens);
        return logits.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// One decode step with fixed shapes, for capture in a CUDA graph: ids and positionIds [B, 1] and mask
    /// [B, 1, 1, Capacity] live on the model's device, and the cache writes at a device-held slot
    /// (<see cref="KvCache.WritingAtDeviceSlot"/>). Nothing here reads a value back to the host; the caller validated
    /// the shapes once, and commits the cache.
    /// </summary>
    internal Tensor DecodeFixed(Tensor ids, Tensor positionIds, Tensor mask, KvCache cache)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var hidden = _model.forward(ids, positionIds, mask, cache);                 // [B, 1, hidden]
        return Head(hidden).MoveToOuterDisposeScope();                             // [B, 1, vocab]
    }

    /// <summary>lm_head, or with tied embeddings the embedding matrix (on the embedding's device).</summary>
    private Tensor Head(Tensor hidden) => _lmHead is not null
        ? Kernels.Linear(_lmHead, hidden)
        : Kernels.Linear(_mapped ? hidden.to(_map.Embedding) : hidden, _model.EmbedTokens.weight!);

    private (long Batch, long Tokens) CheckInputs(Tensor inputIds, KvCache? cache, Tensor? attentionMask, Tensor? positionIds, long past, Device device)
    {
        Guard.Rank(inputIds, 2, nameof(inputIds), "[batch, tokens]");
        if (inputIds.dtype != ScalarType.Int64 && inputIds.dtype != ScalarType.Int32)
            throw new ArgumentException($"inputIds must hold int64 (or int32) token ids, but has dtype {inputIds.dtype}.", nameof(inputIds));
        long batch = inputIds.size(0), tokens = inputIds.size(1);
        if (batch == 0 || tokens == 0)
            throw new ArgumentException($"inputIds must hold at least one token, but has shape {Guard.Shape(inputIds)}.", nameof(inputIds));
        Guard.SameDevice(inputIds, device, nameof(inputIds));
        using (NewDisposeScope())
        using (no_grad())
        {
            long min = inputIds.min().item<long>(), max = inputIds.max().item<long>();
            if (min < 0 || max >= Config.VocabSize)
                throw new ArgumentOutOfRangeException(nameof(inputIds),
                    $"inputIds must be token ids in [0, {Config.VocabSize}), but range from {min} to {max}.");
        }
        if (cache is not null)
        {
            cache.EnsureCompatible(Config, batch, MapOn(device).Layers);
            cache.EnsureRoom(tokens);
        }
        if (attentionMask is not null)
        {
            Guard.Rank(attentionMask, 2, nameof(attentionMask), "[batch, past + tokens]");
            if (attentionMask.size(0) != batch || attentionMask.size(1) != past + tokens)
                throw new ArgumentException(
                    $"attentionMask must be [{batch}, {past + tokens}] (cached plus new tokens), but has shape {Guard.Shape(attentionMask)}.", nameof(attentionMask));
            Guard.SameDevice(attentionMask, device, nameof(attentionMask));
        }
        if (positionIds is not null)
        {
            Guard.Rank(positionIds, 2, nameof(positionIds), "[batch, tokens]");
            if (positionIds.size(0) != batch || positionIds.size(1) != tokens)
                throw new ArgumentException($"positionIds must be [{batch}, {tokens}], but has shape {Guard.Shape(positionIds)}.", nameof(positionIds));
            if (positionIds.dtype != ScalarType.Int64 && positionIds.dtype != ScalarType.Int32)
                throw new ArgumentException($"positionIds must be int64 or int32, but has dtype {positionIds.dtype}.", nameof(positionIds));
            Guard.SameDevice(positionIds, device, nameof(positionIds));
        }
        return (batch, tokens);
    }

    /// <summary>HF's inner <c>model</c>: embedding, layers, final norm and the shared RoPE tables.</summary>
    private sealed class DecoderStack : nn.Module
    {
        [ComponentName(Name = "embed_tokens")] private readonly Embedding _embedTokens;
        [ComponentName(Name = "layers")] private readonly ModuleList<DecoderLayer> _layers;
        [ComponentName(Name = "norm")] private readonly RmsNorm _norm;
        [ComponentName(Name = "rotary_emb")] private readonly RotaryEmbedding _rotary;

        private readonly DeviceMap _map;
        private readonly bool _mapped;

        public DecoderStack(DecoderConfig config, DeviceMap map, ScalarType? dtype) : base("model")
        {
            _map = map;
            _mapped = !map.IsSingleDevice;
            _embedTokens = nn.Embedding(config.VocabSize, config.HiddenSize, device: map.Embedding, dtype: dtype);
            _rotary = new RotaryEmbedding(config.HeadDim, config.RopeTheta, config.RopeScaling); // one table, shared by every layer
            _layers = nn.ModuleList(Enumerable.Range(0, config.NumHiddenLayers).Select(i => new DecoderLayer(config, i, device: map.Layers[i], dtype: dtype, rotary: _rotary)).ToArray());
            _norm = new RmsNorm(config.HiddenSize, config.RmsNormEps, device: map.Head, dtype: dtype);
            RegisterComponents();
        }

        public Embedding EmbedTokens => _embedTokens;

        public IReadOnlyList<DecoderLayer> Layers => _layers.ToArray();

        public Tensor forward(Tensor ids, Tensor positionIds, Tensor? mask, KvCache? cache)
        {
            using var scope = NewDisposeScope();
            var h = _embedTokens.forward(ids);                      // [B, T, hidden]
            var (cos, sin) = _rotary.forward(positionIds, h.dtype); // [B, T, headDim] each
            for (int i = 0; i < _layers.Count; i++)
            {
                if (_mapped) (h, cos, sin, mask) = MoveTo(_map.Layers[i], h, cos, sin, mask); // across a device boundary
                h = _layers[i].forward(h, cos, sin, mask, cache);
            }
            if (_mapped) h = h.to(_map.Head);
            return _norm.forward(h).MoveToOuterDisposeScope();
        }

        private static (Tensor, Tensor, Tensor, Tensor?) MoveTo(Device device, Tensor h, Tensor cos, Tensor sin, Tensor? mask)
            => DeviceMap.Same(h.device, device) ? (h, cos, sin, mask) : (h.to(device), cos.to(device), sin.to(device), mask?.to(device));
    }
}
