using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>
/// A decoder-only language model in the Llama layout and the families that differ from it in parts (Mistral, Qwen2/3,
/// Gemma 2/3, Phi-3, SmolLM3, OLMo 2; ADR 0021): token embedding, a stack of <see cref="DecoderLayer"/>s, a final
/// <see cref="RmsNorm"/> and the <c>lm_head</c>. Its state-dict keys are
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
        _finalSoftcap = config.Family.FinalSoftcap(config);
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
    private readonly double? _finalSoftcap;

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
    /// in <c>model.safetensors.index.json</c>). Any family of <see cref="DecoderConfig.SupportedModelTypes"/>. Weights stream tensor by tensor
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

    /// <summary>The RoPE tables the layers share: one per distinct RoPE (Gemma 3: the local and the global one).</summary>
    internal IReadOnlyList<RotaryEmbedding> RotaryTables => _model.Rotaries;

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
        if (cache is not null && _model.SwitchesAfter is { } switchAt)
        {
            if (past > 0 && past <= switchAt && past + tokens > switchAt)
                return Refill(inputIds, cache, attentionMask, lastTokenOnly, past, tokens);
            cache.Record(inputIds, past);
        }
        using var scope = NewDisposeScope();
        using var noGrad = cache is not null ? no_grad() : null;
        var ids = inputIds.dtype == ScalarType.Int64 ? inputIds : inputIds.to(ScalarType.Int64);
        long? extent = positionIds is null ? past + tokens : null;                 // else the rotary reads the largest position
        positionIds ??= arange(past, past + tokens, ScalarType.Int64, device).unsqueeze(0).expand(batch, -1); // [B, T]
        var masks = Masks(tokens, past, cache, attentionMask, device);             // per layer: [B, 1, T, S] or null

        var hidden = _model.forward(ids, positionIds, masks, cache, extent);       // [B, T, hidden]
        if (lastTokenOnly) hidden = hidden.narrow(1, tokens - 1, 1);                // [B, 1, hidden]
        var logits = Head(hidden);                                                  // [B, T, vocab]
        cache?.Advance((int)tokens);
        return logits.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// LongRoPE (Phi-3): the cached keys turned with the short factors, and this forward reaches past the original
    /// context, where every position takes the long ones. transformers' generate then drops the cache and reads the
    /// whole sequence again (Phi3ForCausalLM.prepare_inputs_for_generation); so does this, from the token ids the cache
    /// recorded, with positions from the attention mask as generate makes them. Returns the logits of the new tokens.
    /// </summary>
    private Tensor Refill(Tensor inputIds, KvCache cache, Tensor? attentionMask, bool lastTokenOnly, long past, long tokens)
    {
        using var scope = NewDisposeScope();
        var ids = cat([cache.Recorded(past).to(inputIds.device), inputIds.to(ScalarType.Int64)], 1);   // [B, past + T]
        var positions = attentionMask is null ? null
            : (attentionMask.to(ScalarType.Int64).cumsum(-1) - 1).masked_fill(attentionMask.eq(0), 1);
        cache.Reset();
        var logits = forward(ids, cache, attentionMask, positions, lastTokenOnly);
        return (lastTokenOnly ? logits : logits.narrow(1, past, tokens)).MoveToOuterDisposeScope();
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
        var masks = Enumerable.Repeat<Tensor?>(mask, Config.NumHiddenLayers).ToArray(); // no ring, so one mask serves every layer
        var hidden = _model.forward(ids, positionIds, masks, cache, cache.Capacity); // [B, 1, hidden]
        return Head(hidden).MoveToOuterDisposeScope();                             // [B, 1, vocab]
    }

    /// <summary>Whether a fixed-shape step (a CUDA graph) serves every position of a cache of <paramref name="capacity"/>.</summary>
    internal bool FixedStepServes(int capacity) => FixedStepRefusal(capacity) is null;

    /// <summary>
    /// Why a fixed-shape step (a CUDA graph) cannot serve a cache of <paramref name="capacity"/>, or null when it can: a
    /// layer's window shorter than the capacity makes that layer a ring, whose slots move (ADR 0021); a LongRoPE table
    /// switches within the capacity.
    /// </summary>
    internal string? FixedStepRefusal(int capacity)
    {
        if (Enumerable.Range(0, Config.NumHiddenLayers).Select(Config.WindowOf).FirstOrDefault(w => w < capacity) is { } window)
            return $"a sliding window of {window} tokens is shorter than the cache's {capacity}, so its layers are rings: decode runs eagerly";
        if (!_model.OneTableUpTo(capacity))
            return $"LongRoPE switches to its long factors within the cache's {capacity} tokens: decode runs eagerly";
        return null;
    }

    /// <summary>
    /// Each layer's mask for <paramref name="tokens"/> new tokens after <paramref name="past"/> cached ones: built once per
    /// distinct window and cache layout (Gemma 3: one for its sliding layers, one for its full ones), null where plain
    /// causal attention is right.
    /// </summary>
    private Tensor?[] Masks(long tokens, long past, KvCache? cache, Tensor? attentionMask, Device device)
    {
        var masks = new Tensor?[Config.NumHiddenLayers];
        var built = new Dictionary<(int? Window, int Slots), Tensor?>();
        for (int layer = 0; layer < masks.Length; layer++)
        {
            var key = (Config.WindowOf(layer), cache?.SlotsOf(layer) ?? 0);
            if (!built.TryGetValue(key, out var mask))
                built[key] = mask = AttentionMask.Build(tokens, past, cache?.KeyPositions(layer, tokens), attentionMask, key.Item1, device);
            masks[layer] = mask;
        }
        return masks;
    }

    /// <summary>lm_head, or with tied embeddings the embedding matrix (on the embedding's device); Gemma soft-caps the logits.</summary>
    private Tensor Head(Tensor hidden)
    {
        var logits = _lmHead is not null
            ? Kernels.Linear(_lmHead, hidden)
            : Kernels.Linear(_mapped ? hidden.to(_map.Embedding) : hidden, _model.EmbedTokens.weight!);
        return _finalSoftcap is { } cap ? logits.div_(cap).tanh_().mul_(cap) : logits;
    }

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

    /// <summary>HF's inner <c>model</c>: embedding, layers, final norm and the RoPE tables the layers share.</summary>
    private sealed class DecoderStack : nn.Module
    {
        [ComponentName(Name = "embed_tokens")] private readonly Embedding _embedTokens;
        [ComponentName(Name = "layers")] private readonly ModuleList<DecoderLayer> _layers;
        [ComponentName(Name = "norm")] private readonly RmsNorm _norm;
        private readonly RotaryEmbedding[] _rotaries;   // one per distinct RoPE (Gemma 3: local and global); no parameters
        private readonly int[] _rotaryOf;               // each layer's table in _rotaries, or -1 for a layer without RoPE
        private readonly double? _embeddingScale;

        private readonly DeviceMap _map;
        private readonly bool _mapped;

        public DecoderStack(DecoderConfig config, DeviceMap map, ScalarType? dtype) : base("model")
        {
            _map = map;
            _mapped = !map.IsSingleDevice;
            var family = config.Family;
            _embeddingScale = family.EmbeddingScale(config);
            _embedTokens = nn.Embedding(config.VocabSize, config.HiddenSize, device: map.Embedding, dtype: dtype);
            var specs = Enumerable.Range(0, config.NumHiddenLayers).Select(i => family.Rotary(config, i)).ToArray();
            var distinct = specs.OfType<RotarySpec>().Distinct().ToList();
            _rotaries = [.. distinct.Select(spec => new RotaryEmbedding(spec))];
            _rotaryOf = [.. specs.Select(spec => spec is null ? -1 : distinct.IndexOf(spec))];
            _layers = nn.ModuleList(Enumerable.Range(0, config.NumHiddenLayers).Select(i => new DecoderLayer(config, i, device: map.Layers[i], dtype: dtype,
                rotary: _rotaryOf[i] < 0 ? null : _rotaries[_rotaryOf[i]])).ToArray());
            _norm = new RmsNorm(config.HiddenSize, config.RmsNormEps, device: map.Head, dtype: dtype, kind: family.NormKind);
            RegisterComponents();
        }

        public Embedding EmbedTokens => _embedTokens;

        public IReadOnlyList<DecoderLayer> Layers => _layers.ToArray();

        public IReadOnlyList<RotaryEmbedding> Rotaries => _rotaries;

        /// <summary>Whether every RoPE table stays one table for positions below <paramref name="extent"/> (LongRoPE switches).</summary>
        public bool OneTableUpTo(long extent) => _rotaries.All(r => r.OneTableUpTo(extent));

        /// <summary>The sequence length past which a LongRoPE table switches to its long factors, or null.</summary>
        public long? SwitchesAfter => _rotaries.Select(r => r.SwitchesAfter).Min();

        /// <param name="ids">[B, T]</param>
        /// <param name="positionIds">[B, T]</param>
        /// <param name="masks">Each layer's mask [B, 1, T, S], or null entries for plain causal attention.</param>
        /// <param name="cache">The cache, or null.</param>
        /// <param name="extent">The largest position + 1 where the caller knows it (no read of the positions).</param>
        public Tensor forward(Tensor ids, Tensor positionIds, IReadOnlyList<Tensor?> masks, KvCache? cache, long? extent)
        {
            using var scope = NewDisposeScope();
            var h = _embedTokens.forward(ids);                                          // [B, T, hidden]
            if (_embeddingScale is { } scale) h = h * RoundedTo(h.dtype, scale);       // Gemma: √hidden in the weights' dtype
            var tables = _rotaries.Select(r => r.forward(positionIds, h.dtype, extent)).ToArray(); // [B, T, RotaryDim] each
            for (int i = 0; i < _layers.Count; i++)
            {
                var (cos, sin) = _rotaryOf[i] < 0 ? (null, null) : tables[_rotaryOf[i]];
                var mask = masks[i];
                if (_mapped && !DeviceMap.Same(h.device, _map.Layers[i]))            // across a device boundary
                    (h, cos, sin, mask) = (h.to(_map.Layers[i]), cos?.to(_map.Layers[i]), sin?.to(_map.Layers[i]), mask?.to(_map.Layers[i]));
                h = _layers[i].forward(h, cos, sin, mask, cache);
            }
            if (_mapped) h = h.to(_map.Head);
            return _norm.forward(h).MoveToOuterDisposeScope();
        }

        /// <summary>The scale as transformers applies it: rounded to the dtype first (Gemma 3: √3072 = 55.43 is 55.5 in bfloat16).</summary>
        private static double RoundedTo(ScalarType dtype, double scale)
        {
            using var scope = NewDisposeScope();
            return tensor((float)scale).to(dtype).to(ScalarType.Float32).item<float>();
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing) foreach (var rotary in _rotaries) rotary.Dispose();
            base.Dispose(disposing);
        }
    }
}
