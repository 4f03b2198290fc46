using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>
/// Multi-head attention with grouped key/value heads (GQA). <see cref="NumKvHeads"/> key/value heads each serve
/// <see cref="GroupSize"/> = G query heads: equal to <see cref="NumHeads"/> it is plain multi-head attention, 1 is
/// multi-query attention. For input x [B, T, hidden]:
/// <code>
/// q = x·Wq  → [B, H, T, D]      k = x·Wk, v = x·Wv → [B, Hkv, T, D]      (Hkv = H / G)
/// q, k = norm(q), norm(k)       (Qwen3, Gemma 3: per head; OLMo 2: over the whole projection; most: none)
/// q, k = rope(q), rope(k)       (over the first RotaryDim dimensions; none on SmolLM3's NoPE layers)
/// k, v = cache.write(k, v)      → [B, Hkv, S, D]: every token so far (a sliding layer: its window)
/// o_h = softmax(cap(q_h·k_{h/G}ᵀ · scale) + mask) · v_{h/G}     for each query head h (scale D^-½ but for Gemma)
/// y = concat_h(o_h)·Wo
/// </code>
/// Query head h reads key/value head h / G in place: K and V are never copied per query head, so the cache and the
/// bytes read per step shrink by G. Parameter names are HF's: <c>q_proj</c>, <c>k_proj</c>, <c>v_proj</c> (Phi-3:
/// <c>qkv_proj</c>), <c>o_proj</c>, <c>q_norm</c>, <c>k_norm</c>. What a layer has comes from its family (ADR 0021).
/// </summary>
public sealed class MultiHeadAttention : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "q_proj")] private readonly Linear? _qProj;
    [ComponentName(Name = "k_proj")] private readonly Linear? _kProj;
    [ComponentName(Name = "v_proj")] private readonly Linear? _vProj;
    [ComponentName(Name = "qkv_proj")] private readonly Linear? _qkvProj;          // Phi-3 stores q, k and v as one matrix
    [ComponentName(Name = "o_proj")] private readonly Linear _oProj;
    [ComponentName(Name = "q_norm")] private readonly RmsNorm? _qNorm;             // Qwen3, Gemma 3: per head; OLMo 2: whole
    [ComponentName(Name = "k_norm")] private readonly RmsNorm? _kNorm;
    [ComponentName(Name = "rotary_emb")] private readonly RotaryEmbedding? _rotary; // the model's table, an own one (standalone), or none (NoPE)
    private readonly FusedLinears _qkv;                                             // q/k/v as one product (ADR 0015)
    private readonly QkNorm _qkNormKind;
    private readonly AttentionScoring _scoring;

    /// <summary>Creates attention directly, as in the design record: <c>new MultiHeadAttention(2048, 32, 8)</c>.</summary>
    /// <param name="hiddenSize">Width of the input and output.</param>
    /// <param name="numHeads">Number of query heads.</param>
    /// <param name="numKvHeads">Number of key/value heads; divides <paramref name="numHeads"/>. Default: numHeads (MHA).</param>
    /// <param name="headDim">Head size. Default: hiddenSize / numHeads.</param>
    /// <param name="bias">Biases on all four projections.</param>
    /// <param name="ropeTheta">RoPE base.</param>
    /// <param name="ropeScaling">Optional RoPE scaling.</param>
    /// <param name="layerIndex">Which layer of a <see cref="KvCache"/> this attention reads and writes.</param>
    /// <param name="name">Module name.</param>
    /// <param name="device">Device of the weights (default CPU).</param>
    /// <param name="dtype">Element type of the weights (default float32).</param>
    public MultiHeadAttention(int hiddenSize, int numHeads, int? numKvHeads = null, int? headDim = null, bool bias = false,
        double ropeTheta = 10000.0, RopeScaling? ropeScaling = null, int layerIndex = 0, string name = "self_attn",
        Device? device = null, ScalarType? dtype = null)
        : this(Direct(hiddenSize, numHeads, numKvHeads ?? numHeads, headDim, bias, ropeTheta, ropeScaling), layerIndex, name, device, dtype, null)
    {
    }

    /// <summary>Creates the attention of layer <paramref name="layerIndex"/> from a validated config, with its family's parts.</summary>
    /// <param name="config">The model's config.</param>
    /// <param name="layerIndex">Which layer of the model (its parts, and its layer of a <see cref="KvCache"/>).</param>
    /// <param name="name">Module name.</param>
    /// <param name="device">Device of the weights (default CPU).</param>
    /// <param name="dtype">Element type of the weights (default float32).</param>
    /// <param name="rotary">The model's RoPE table for this layer, disposed by its owner; null creates one for this attention.</param>
    public MultiHeadAttention(DecoderConfig config, int layerIndex = 0, string name = "self_attn", Device? device = null, ScalarType? dtype = null,
        RotaryEmbedding? rotary = null)
        : this(PartsOf(config, layerIndex), layerIndex, name, device, dtype, rotary)
    {
    }

    internal MultiHeadAttention(AttentionParts parts, int layerIndex, string name, Device? device, ScalarType? dtype, RotaryEmbedding? rotary)
        : base(TorchBackend.Checked(name))
    {
        DecoderConfig.ValidateAttentionShape(parts.HiddenSize, parts.NumHeads, parts.NumKvHeads, parts.HeadDim, nameof(parts.NumKvHeads));
        if (layerIndex < 0)
            throw new ArgumentOutOfRangeException(nameof(layerIndex), layerIndex, "layerIndex must not be negative.");
        HiddenSize = parts.HiddenSize;
        NumHeads = parts.NumHeads;
        NumKvHeads = parts.NumKvHeads;
        HeadDim = parts.HeadDim;
        LayerIndex = layerIndex;
        SlidingWindow = parts.Window;
        _qkNormKind = parts.QkNorm;
        _scoring = new AttentionScoring(parts.Scale, parts.Softcap);
        long q = (long)NumHeads * HeadDim, kv = (long)NumKvHeads * HeadDim;
        if (parts.Fused)
        {
            _qkvProj = nn.Linear(HiddenSize, q + 2 * kv, hasBias: parts.QkvBias, device, dtype);
            _qkv = new FusedLinears(_qkvProj, q, kv, kv);
        }
        else
        {
            _qProj = nn.Linear(HiddenSize, q, hasBias: parts.QkvBias, device, dtype);
            _kProj = nn.Linear(HiddenSize, kv, hasBias: parts.QkvBias, device, dtype);
            _vProj = nn.Linear(HiddenSize, kv, hasBias: parts.QkvBias, device, dtype);
            _qkv = new FusedLinears(_qProj, _kProj, _vProj);
        }
        _oProj = nn.Linear(q, HiddenSize, hasBias: parts.OutputBias, device, dtype);
        if (parts.QkNorm != QkNorm.None)
        {
            bool perHead = parts.QkNorm == QkNorm.PerHead;
            _qNorm = new RmsNorm((int)(perHead ? HeadDim : q), parts.NormEps, "q_norm", device, dtype, parts.NormKind);
            _kNorm = new RmsNorm((int)(perHead ? HeadDim : kv), parts.NormEps, "k_norm", device, dtype, parts.NormKind);
        }
        if (rotary is not null && (parts.Rotary is null || rotary.HeadDim != HeadDim || rotary.RotaryDim != parts.Rotary.RotaryDim))
            throw new ArgumentException(
                $"rotary must be built for head size {HeadDim} rotating {parts.Rotary?.RotaryDim.ToString() ?? "no"} dimensions, but is for {rotary.HeadDim} rotating {rotary.RotaryDim}.", nameof(rotary));
        if (rotary is null && parts.Rotary is not null) _rotary = new RotaryEmbedding(parts.Rotary);
        RegisterComponents();
        // A shared table is set after registration: it stays out of this module's submodules, so its owner disposes it once.
        _rotary ??= rotary;
    }

    private static AttentionParts Direct(int hiddenSize, int numHeads, int numKvHeads, int? headDim, bool bias, double ropeTheta, RopeScaling? ropeScaling)
    {
        DecoderConfig.ValidateAttentionShape(hiddenSize, numHeads, numKvHeads, headDim, nameof(numKvHeads));
        int d = headDim ?? hiddenSize / numHeads;
        if (ropeScaling?.RopeType == "longrope")
            throw new ArgumentException("LongRoPE needs the model's context sizes: build the attention from a config.", nameof(ropeScaling));
        return new(hiddenSize, numHeads, numKvHeads, d, bias, bias, QkNorm.None, RmsNormKind.Llama, 1e-6, 1.0 / Math.Sqrt(d), null, null,
            new RotarySpec(d, d, ropeTheta, ropeScaling), Fused: false);
    }

    private static AttentionParts PartsOf(DecoderConfig config, int layerIndex)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        if (layerIndex < 0 || layerIndex >= config.NumHiddenLayers)
            throw new ArgumentOutOfRangeException(nameof(layerIndex), layerIndex, $"layerIndex must be in [0, {config.NumHiddenLayers}).");
        return config.Family.Attention(config, layerIndex);
    }

    /// <summary>Width of the input and output.</summary>
    public int HiddenSize { get; }

    /// <summary>Number of query heads.</summary>
    public int NumHeads { get; }

    /// <summary>Number of key/value heads.</summary>
    public int NumKvHeads { get; }

    /// <summary>Size of each head.</summary>
    public int HeadDim { get; }

    /// <summary>Query heads per key/value head.</summary>
    public int GroupSize => NumHeads / NumKvHeads;

    /// <summary>The layer of a <see cref="KvCache"/> this attention uses.</summary>
    public int LayerIndex { get; }

    /// <summary>The sliding window of this layer (a query sees the last this-many keys, itself included), or null.</summary>
    public int? SlidingWindow { get; }

    /// <summary>How many of each head's first dimensions RoPE turns: <see cref="HeadDim"/>, fewer (partial rotary), or 0 (no RoPE).</summary>
    public int RotaryDim => _rotary?.RotaryDim ?? 0;

    /// <summary>q_proj, k_proj and v_proj as one group (fused on CUDA; Phi-3's qkv_proj is one already).</summary>
    internal FusedLinears Projections => _qkv;

    /// <summary>Causal self-attention over <paramref name="x"/> [B, T, hidden] at positions 0..T-1, no cache.</summary>
    public override Tensor forward(Tensor x) => forward(x, causal: true);

    /// <summary>Self-attention over <paramref name="x"/> [B, T, hidden] at positions 0..T-1, causal or not, no cache.</summary>
    public Tensor forward(Tensor x, bool causal)
    {
        CheckInput(x);
        using var scope = NewDisposeScope();
        var positions = arange(x.size(1), ScalarType.Int64, x.device).unsqueeze(0).expand(x.size(0), -1); // [B, T]
        var (cos, sin) = _rotary is null ? (null, null) : _rotary.forward(positions, x.dtype, x.size(1));
        return Attend(x, cos, sin, mask: null, cache: null, causal).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Causal self-attention of <paramref name="x"/> [B, T, hidden] whose tokens follow the <paramref name="cache"/>'s
    /// committed tokens. Writes this layer's keys and values into the cache (the caller commits them with
    /// <see cref="KvCache.Advance"/>; <see cref="DecoderModel"/> does). Returns [B, T, hidden].
    /// </summary>
    /// <param name="x">Input [B, T, hidden].</param>
    /// <param name="cos">RoPE cos table [B, T, RotaryDim] (from <see cref="RotaryEmbedding.forward(Tensor, ScalarType)"/>); null for a layer without RoPE.</param>
    /// <param name="sin">RoPE sin table [B, T, RotaryDim]; null for a layer without RoPE.</param>
    /// <param name="mask">Optional boolean mask [B or 1, 1, T, S] (true = attend) that already includes causality and
    /// this layer's window; null for plain causal attention.</param>
    /// <param name="cache">Optional KV cache; null attends within <paramref name="x"/> only.</param>
    public Tensor forward(Tensor x, Tensor? cos, Tensor? sin, Tensor? mask = null, KvCache? cache = null)
    {
        CheckInput(x);
        if (RotaryDim == 0 ? cos is not null || sin is not null
                           : cos is null || sin is null || cos.dim() != 3 || !Guard.SameShape(cos, sin)
                             || cos.size(0) != x.size(0) || cos.size(1) != x.size(1) || cos.size(2) != RotaryDim)
            throw new ArgumentException(RotaryDim == 0
                ? "This layer has no RoPE: cos and sin must be null."
                : $"cos and sin must be [{x.size(0)}, {x.size(1)}, {RotaryDim}], but are {(cos is null ? "null" : Guard.Shape(cos))} and {(sin is null ? "null" : Guard.Shape(sin))}.", nameof(cos));
        if (cache is not null)
        {
            cache.EnsureCompatibleLayer(LayerIndex, NumKvHeads, HeadDim, x.size(0), x.device, SlidingWindow);
            cache.EnsureRoom(x.size(1));
        }
        return Attend(x, cos, sin, mask, cache, causal: true);
    }

    private Tensor Attend(Tensor x, Tensor? cos, Tensor? sin, Tensor? mask, KvCache? cache, bool causal)
    {
        using var scope = NewDisposeScope();
        var qkv = Kernels.Linear(_qkv, x);                                // x·Wq, x·Wk, x·Wv: [B, T, H·D], [B, T, Hkv·D] ×2
        var (q, k) = (qkv[0], qkv[1]);
        if (_qkNormKind == QkNorm.WholeProjection) (q, k) = (_qNorm!.forward(q), _kNorm!.forward(k)); // OLMo 2: all heads at once
        q = SplitHeads(q, NumHeads);                                      // [B, H, T, D]
        k = SplitHeads(k, NumKvHeads);                                    // [B, Hkv, T, D]: one key per group of G query heads
        var v = SplitHeads(qkv[2], NumKvHeads);                           // [B, Hkv, T, D]
        if (_qkNormKind == QkNorm.PerHead) (q, k) = (_qNorm!.forward(q), _kNorm!.forward(k));         // Qwen3, Gemma 3: each head
        if (cos is not null) (q, k) = RotaryEmbedding.Apply(q, k, cos, sin!);
        if (cache is not null)
            (k, v) = cache.Write(LayerIndex, k, v);                       // [B, Hkv, S, D]: every token so far, views of the cache
        var o = Attention(q, k, v, mask, causal, _scoring);               // [B, H, T, D]: head h reads K/V head h / G
        return Kernels.Linear(_oProj, MergeHeads(o)).MoveToOuterDisposeScope(); // [B, T, hidden]
    }

    private Tensor SplitHeads(Tensor projected, int heads)                // [B, T, heads·D] → [B, heads, T, D]
        => projected.view(projected.size(0), projected.size(1), heads, HeadDim).transpose(1, 2);

    private static Tensor MergeHeads(Tensor heads)                        // [B, H, T, D] → [B, T, H·D]
        => heads.transpose(1, 2).reshape(heads.size(0), heads.size(2), heads.size(1) * heads.size(3));

    /// <summary>
    /// softmax(q·kᵀ/√d)·v for query heads [B, H, T, D] over grouped keys/values [B, Hkv, S, D], where query head h
    /// uses key/value head h / (H / Hkv). K and V are read in place, never repeated per query head.
    /// </summary>
    /// <param name="query">[B, H, T, D]</param>
    /// <param name="key">[B, Hkv, S, D]</param>
    /// <param name="value">[B, Hkv, S, D]</param>
    /// <param name="mask">Optional boolean mask broadcastable to [B, 1, T, S]; when given, <paramref name="causal"/> is ignored.</param>
    /// <param name="causal">Bottom-right causal: query t sees keys up to S - T + t.</param>
    /// <returns>[B, H, T, D]</returns>
    public static Tensor GroupedScaledDotProduct(Tensor query, Tensor key, Tensor value, Tensor? mask, bool causal)
    {
        CheckGroupedShapes(query, key, value);
        return Attention(query, key, value, mask, causal, AttentionScoring.Plain(query.size(3)));
    }

    /// <summary>The attention of <see cref="GroupedScaledDotProduct"/>, the queries in their own dtype and the result in it too.</summary>
    private static Tensor Attention(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal, AttentionScoring scoring)
    {
        long b = q.size(0), heads = q.size(1), d = q.size(3), kvHeads = k.size(1);
        if (q.size(2) > 1)
            return Kernels.PrefillAttention(q.to(k.dtype), k, v, mask, causal, scoring).to(q.dtype);
        // Decode: the G query heads of a group are G rows of one query block over the group's one K and V.
        var folded = q.reshape(b, kvHeads, heads / kvHeads, d);                        // [B, Hkv, G, D]
        return Kernels.DecodeAttention(folded, k, v, mask, q.dtype, scoring).reshape(b, heads, 1, d); // [B, H, 1, D]
    }

    /// <summary>
    /// Prefill, T &gt; 1 queries: member g of every group attends to its group's K/V through SDPA, so K/V are shared,
    /// not copied (SDPA itself needs as many key heads as query heads).
    /// </summary>
    internal static Tensor PrefillBySdpa(Tensor query, Tensor key, Tensor value, Tensor? mask, bool causal)
    {
        long b = query.size(0), heads = query.size(1), t = query.size(2), d = query.size(3);
        long kvHeads = key.size(1), s = key.size(2), group = heads / kvHeads;
        using var scope = NewDisposeScope();
        bool sdpaCausal = causal && mask is null && t == s;                            // SDPA's is_causal is top-left aligned
        if (causal && mask is null && t != s) mask = AttentionMask.Causal(t, s, query.device);
        if (group == 1)
            return nn.functional.scaled_dot_product_attention(query, key, value, mask, is_casual: sdpaCausal).MoveToOuterDisposeScope();
        var grouped = query.reshape(b, kvHeads, group, t, d);                         // [B, Hkv, G, T, D]
        var members = new Tensor[group];
        for (int g = 0; g < group; g++)
            members[g] = nn.functional.scaled_dot_product_attention(grouped.select(2, g), key, value, mask, is_casual: sdpaCausal); // [B, Hkv, T, D]
        return stack(members, 2).reshape(b, heads, t, d).MoveToOuterDisposeScope();   // [B, H, T, D]
    }

    /// <summary>
    /// Decode, one query per sequence, G query heads folded [B, Hkv, G, D] over [B, Hkv, S, D]: the G heads are the G
    /// columns of one K·qᵀ product, so K streams through once; softmax in float32. Plain matmuls, not SDPA: on CUDA,
    /// SDPA re-plans for every new key length (ADR 0003); q·Kᵀ in place of K·qᵀ was no clear gain on the H200 (ADR 0015).
    /// </summary>
    internal static Tensor DecodeByMatmul(Tensor folded, Tensor key, Tensor value, Tensor? mask, AttentionScoring scoring)
    {
        using var scope = NewDisposeScope();
        var scaled = folded * scoring.Scale;
        var scores = key.matmul(scaled.transpose(2, 3))       // [B, Hkv, S, G]
            .transpose(2, 3).contiguous();                    // [B, Hkv, G, S]
        scores = scoring.Cap(scores);
        if (mask is not null)
            scores = scores.masked_fill(mask.logical_not(), double.NegativeInfinity); // mask [B, 1, 1, S]
        var weights = scores.softmax(-1, ScalarType.Float32).to(value.dtype);
        return weights.matmul(value).MoveToOuterDisposeScope(); // [B, Hkv, G, D]
    }

    /// <summary>
    /// Prefill where SDPA cannot serve (soft-capped scores, Gemma 2): the G query heads of a group and their T queries
    /// are G·T rows of one product with the group's K, as in transformers' eager attention: scores · scale, capped,
    /// masked, softmax in float32.
    /// </summary>
    internal static Tensor PrefillByMatmul(Tensor query, Tensor key, Tensor value, Tensor? mask, bool causal, AttentionScoring scoring)
    {
        long b = query.size(0), heads = query.size(1), t = query.size(2), d = query.size(3);
        long kvHeads = key.size(1), s = key.size(2), group = heads / kvHeads;
        using var scope = NewDisposeScope();
        if (causal && mask is null) mask = AttentionMask.Causal(t, s, query.device);
        if (mask is not null && mask.dim() == 2) mask = mask.view(1, 1, t, s);
        var rows = query.reshape(b, kvHeads, group * t, d);                               // [B, Hkv, G·T, D]
        var scores = scoring.Cap(rows.matmul(key.transpose(2, 3)) * scoring.Scale)        // [B, Hkv, G·T, S]
            .view(b, kvHeads, group, t, s);                                               // [B, Hkv, G, T, S]
        if (mask is not null)
            scores = scores.masked_fill(mask.unsqueeze(2).logical_not(), double.NegativeInfinity); // mask [B, 1, 1, T, S]
        var weights = scores.softmax(-1, ScalarType.Float32).to(value.dtype).view(b, kvHeads, group * t, s);
        return weights.matmul(value).view(b, heads, t, d).MoveToOuterDisposeScope();     // [B, H, T, D]
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing) _qkv.Dispose();
        base.Dispose(disposing);
    }

    private static void CheckGroupedShapes(Tensor query, Tensor key, Tensor value)
    {
        Guard.Rank(query, 4, nameof(query), "[batch, heads, tokens, head_dim]");
        Guard.Rank(key, 4, nameof(key), "[batch, kv_heads, keys, head_dim]");
        Guard.Rank(value, 4, nameof(value), "[batch, kv_heads, keys, head_dim]");
        if (!Guard.SameShape(key, value))
            throw new ArgumentException($"key and value must have the same shape, but are {Guard.Shape(key)} and {Guard.Shape(value)}.", nameof(value));
        if (key.size(0) != query.size(0) || key.size(3) != query.size(3) || key.size(1) == 0 || query.size(1) % key.size(1) != 0)
            throw new ArgumentException(
                $"query {Guard.Shape(query)} and key {Guard.Shape(key)} must share batch and head_dim, and the query heads must be a multiple of the key heads.", nameof(key));
        if (query.dtype != key.dtype || key.dtype != value.dtype)
            throw new ArgumentException($"query, key and value must share a dtype, but are {query.dtype}, {key.dtype} and {value.dtype}.", nameof(key));
        static bool SameDevice(Tensor a, Tensor b) => a.device_type == b.device_type && a.device_index == b.device_index;
        if (!SameDevice(query, key) || !SameDevice(key, value))
            throw new ArgumentException($"query, key and value must be on one device, but are on {query.device}, {key.device} and {value.device}.", nameof(key));
    }

    private void CheckInput(Tensor x)
    {
        Guard.Rank(x, 3, nameof(x), "[batch, tokens, hidden]");
        if (x.size(2) != HiddenSize)
            throw new ArgumentException($"x must be [batch, tokens, {HiddenSize}], but has shape {Guard.Shape(x)}.", nameof(x));
        if (x.size(0) == 0 || x.size(1) == 0)
            throw new ArgumentException($"x must hold at least one token, but has shape {Guard.Shape(x)}.", nameof(x));
        Guard.FloatingPoint(x, nameof(x));
        var w = _oProj.weight!; // no dispose scope around a parameter getter inside a forward (ADR 0007)
        Guard.SameDevice(x, w.device, nameof(x));
        Guard.SameDtype(x, w.dtype, nameof(x));
    }

}
