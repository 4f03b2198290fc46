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
/// q, k = rope(q), rope(k)
/// k, v = cache.write(k, v)      → [B, Hkv, S, D]: every token so far
/// o_h = softmax(q_h·k_{h/G}ᵀ / √D + mask) · v_{h/G}     for each query head h
/// y = concat_h(o_h)·Wo
/// </code>
/// Query head h reads key/value head h / G in place: K and V are never copied per query head, so the cache and the
/// bytes read per step shrink by G. Parameter names are HF's: <c>q_proj</c>, <c>k_proj</c>, <c>v_proj</c>, <c>o_proj</c>.
/// </summary>
public sealed class MultiHeadAttention : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "q_proj")] private readonly Linear _qProj;
    [ComponentName(Name = "k_proj")] private readonly Linear _kProj;
    [ComponentName(Name = "v_proj")] private readonly Linear _vProj;
    [ComponentName(Name = "o_proj")] private readonly Linear _oProj;
    [ComponentName(Name = "rotary_emb")] private readonly RotaryEmbedding _rotary; // the model's one table, or an own one (standalone)
    private readonly FusedLinears _qkv;                                             // q/k/v as one product on CUDA (ADR 0015)

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
        : this(hiddenSize, numHeads, numKvHeads ?? numHeads, headDim, bias, bias, ropeTheta, ropeScaling, layerIndex, name, device, dtype, null)
    {
    }

    /// <summary>Creates the attention of one decoder layer from a validated config.</summary>
    /// <param name="config">The model's config.</param>
    /// <param name="layerIndex">Which layer of a <see cref="KvCache"/> this attention reads and writes.</param>
    /// <param name="name">Module name.</param>
    /// <param name="device">Device of the weights (default CPU).</param>
    /// <param name="dtype">Element type of the weights (default float32).</param>
    /// <param name="rotary">The model's RoPE table, shared by its layers and disposed by its owner; null creates one for this attention.</param>
    public MultiHeadAttention(DecoderConfig config, int layerIndex = 0, string name = "self_attn", Device? device = null, ScalarType? dtype = null,
        RotaryEmbedding? rotary = null)
        : this(Validated(config).HiddenSize, config.NumAttentionHeads, config.NumKeyValueHeads, config.HeadDim,
            config.QkvBias, config.OutputBias, config.RopeTheta, config.RopeScaling, layerIndex, name, device, dtype, rotary)
    {
    }

    private MultiHeadAttention(int hiddenSize, int numHeads, int numKvHeads, int? headDim, bool qkvBias, bool outputBias,
        double ropeTheta, RopeScaling? ropeScaling, int layerIndex, string name, Device? device, ScalarType? dtype, RotaryEmbedding? rotary) : base(TorchBackend.Checked(name))
    {
        DecoderConfig.ValidateAttentionShape(hiddenSize, numHeads, numKvHeads, headDim, nameof(numKvHeads));
        if (layerIndex < 0)
            throw new ArgumentOutOfRangeException(nameof(layerIndex), layerIndex, "layerIndex must not be negative.");
        HiddenSize = hiddenSize;
        NumHeads = numHeads;
        NumKvHeads = numKvHeads;
        HeadDim = headDim ?? hiddenSize / numHeads;
        LayerIndex = layerIndex;
        _qProj = nn.Linear(hiddenSize, numHeads * HeadDim, hasBias: qkvBias, device, dtype);
        _kProj = nn.Linear(hiddenSize, numKvHeads * HeadDim, hasBias: qkvBias, device, dtype);
        _vProj = nn.Linear(hiddenSize, numKvHeads * HeadDim, hasBias: qkvBias, device, dtype);
        _oProj = nn.Linear(numHeads * HeadDim, hiddenSize, hasBias: outputBias, device, dtype);
        _qkv = new FusedLinears(_qProj, _kProj, _vProj);
        if (rotary is not null && rotary.HeadDim != HeadDim)
            throw new ArgumentException($"rotary must be built for head size {HeadDim}, but is for {rotary.HeadDim}.", nameof(rotary));
        if (rotary is null) _rotary = new RotaryEmbedding(HeadDim, ropeTheta, ropeScaling);
        RegisterComponents();
        // A shared table is set after registration: it stays out of this module's submodules, so its owner disposes it once.
        _rotary ??= rotary!;
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

    /// <summary>q_proj, k_proj and v_proj as one group (fused on CUDA).</summary>
    internal FusedLinears Projections => _qkv;

    /// <summary>Causal self-attention over <paramref name="x"/> [B, T, hidden] at positions 0..T-1, no cache.</summary>
    public override Tensor forward(Tensor x) => forward(x, causal: true);

    /// <summary>Self-attention over <paramref name="x"/> [B, T, hidden] at positions 0..T-1, causal or not, no cache.</summary>
    public Tensor forward(Tensor x, bool causal)
    {
        CheckInput(x);
        using var scope = NewDisposeScope();
        var positions = arange(x.size(1), ScalarType.Int64, x.device).unsqueeze(0).expand(x.size(0), -1); // [B, T]
        var (cos, sin) = _rotary.forward(positions, x.dtype);
        return Attend(x, cos, sin, mask: null, cache: null, causal).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Causal self-attention of <paramref name="x"/> [B, T, hidden] whose tokens follow the <paramref name="cache"/>'s
    /// committed tokens. Writes this layer's keys and values into the cache (the caller commits them with
    /// <see cref="KvCache.Advance"/>; <see cref="DecoderModel"/> does). Returns [B, T, hidden].
    /// </summary>
    /// <param name="x">Input [B, T, hidden].</param>
    /// <param name="cos">RoPE cos table [B, T, HeadDim] (from <see cref="RotaryEmbedding.forward"/>).</param>
    /// <param name="sin">RoPE sin table [B, T, HeadDim].</param>
    /// <param name="mask">Optional boolean mask [B or 1, 1, T, S] (true = attend) that already includes causality;
    /// null for plain causal attention.</param>
    /// <param name="cache">Optional KV cache; null attends within <paramref name="x"/> only.</param>
    public Tensor forward(Tensor x, Tensor cos, Tensor sin, Tensor? mask = null, KvCache? cache = null)
    {
        CheckInput(x);
        long expectedCos = x.size(0) * x.size(1) * HeadDim;
        if (cos.numel() != expectedCos || sin.numel() != expectedCos || cos.dim() != 3)
            throw new ArgumentException(
                $"cos and sin must be [{x.size(0)}, {x.size(1)}, {HeadDim}], but are {Guard.Shape(cos)} and {Guard.Shape(sin)}.", nameof(cos));
        if (cache is not null)
        {
            cache.EnsureCompatibleLayer(LayerIndex, NumKvHeads, HeadDim, x.size(0), x.device);
            cache.EnsureRoom(x.size(1));
        }
        return Attend(x, cos, sin, mask, cache, causal: true);
    }

    private Tensor Attend(Tensor x, Tensor cos, Tensor sin, Tensor? mask, KvCache? cache, bool causal)
    {
        using var scope = NewDisposeScope();
        var qkv = Kernels.Linear(_qkv, x);                                // x·Wq, x·Wk, x·Wv
        var q = SplitHeads(qkv[0], NumHeads);                             // [B, H, T, D]
        var k = SplitHeads(qkv[1], NumKvHeads);                           // [B, Hkv, T, D]: one key per group of G query heads
        var v = SplitHeads(qkv[2], NumKvHeads);                           // [B, Hkv, T, D]
        (q, k) = RotaryEmbedding.Apply(q, k, cos, sin);
        if (cache is not null)
            (k, v) = cache.Write(LayerIndex, k, v);                       // [B, Hkv, S, D]: every token so far, views of the cache
        var o = Attention(q, k, v, mask, causal);                         // [B, H, T, D]: head h reads K/V head h / G
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
        return Attention(query, key, value, mask, causal);
    }

    /// <summary>The attention of <see cref="GroupedScaledDotProduct"/>, the queries in their own dtype and the result in it too.</summary>
    private static Tensor Attention(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal)
    {
        long b = q.size(0), heads = q.size(1), d = q.size(3), kvHeads = k.size(1);
        if (q.size(2) > 1)
            return Kernels.PrefillAttention(q.to(k.dtype), k, v, mask, causal).to(q.dtype);
        // Decode: the G query heads of a group are G rows of one query block over the group's one K and V.
        var folded = q.reshape(b, kvHeads, heads / kvHeads, d);                        // [B, Hkv, G, D]
        return Kernels.DecodeAttention(folded, k, v, mask, q.dtype).reshape(b, heads, 1, d); // [B, H, 1, D]
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
    internal static Tensor DecodeByMatmul(Tensor folded, Tensor key, Tensor value, Tensor? mask)
    {
        using var scope = NewDisposeScope();
        var scaled = folded * (1.0 / Math.Sqrt(folded.size(-1)));
        var scores = key.matmul(scaled.transpose(2, 3))       // [B, Hkv, S, G]
            .transpose(2, 3).contiguous();                    // [B, Hkv, G, S]
        if (mask is not null)
            scores = scores.masked_fill(mask.logical_not(), double.NegativeInfinity); // mask [B, 1, 1, S]
        var weights = scores.softmax(-1, ScalarType.Float32).to(value.dtype);
        return weights.matmul(value).MoveToOuterDisposeScope(); // [B, Hkv, G, D]
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
        var w = _qProj.weight!; // no dispose scope around a parameter getter inside a forward (ADR 0007)
        Guard.SameDevice(x, w.device, nameof(x));
        Guard.SameDtype(x, w.dtype, nameof(x));
    }

    private static DecoderConfig Validated(DecoderConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        return config.Validate();
    }
}
