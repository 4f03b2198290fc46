using TorchSharp;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>
/// One decoder block: <c>h = x + norm2(attn(norm1(x))); return h + norm4(mlp(norm3(h)))</c>, where the family decides
/// which norms exist (ADR 0021): Llama has norm1 and norm3 (pre-norm), Gemma all four (sandwich), OLMo 2 norm2 and
/// norm4 (post-norm); an absent norm passes its input. Parameter names are HF's: <c>input_layernorm</c>,
/// <c>self_attn</c>, <c>post_attention_layernorm</c>, <c>pre_feedforward_layernorm</c>, <c>post_feedforward_layernorm</c>, <c>mlp</c>.
/// </summary>
public sealed class DecoderLayer : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "input_layernorm")] private readonly RmsNorm? _inputLayernorm;
    [ComponentName(Name = "self_attn")] private readonly MultiHeadAttention _attention;
    [ComponentName(Name = "post_attention_layernorm")] private readonly RmsNorm? _postAttentionLayernorm;
    [ComponentName(Name = "pre_feedforward_layernorm")] private readonly RmsNorm? _preFeedforwardLayernorm;
    [ComponentName(Name = "post_feedforward_layernorm")] private readonly RmsNorm? _postFeedforwardLayernorm;
    [ComponentName(Name = "mlp")] private readonly GatedMlp _mlp;
    // The four places a norm can sit, pointing at the fields above by the family's names (set after registration).
    private RmsNorm? _norm1, _norm2, _norm3, _norm4;

    /// <summary>Creates layer <paramref name="layerIndex"/> of a model described by <paramref name="config"/>.</summary>
    /// <param name="config">The model's config.</param>
    /// <param name="layerIndex">The layer's index (its parts, and its layer in a <see cref="KvCache"/>).</param>
    /// <param name="name">Module name.</param>
    /// <param name="device">Device of the weights (default CPU).</param>
    /// <param name="dtype">Element type of the weights (default float32).</param>
    /// <param name="rotary">The model's RoPE table for this layer, shared by layers alike; null creates one for this layer.</param>
    public DecoderLayer(DecoderConfig config, int layerIndex = 0, string name = "layer", Device? device = null, ScalarType? dtype = null,
        RotaryEmbedding? rotary = null) : base(TorchBackend.Checked(name))
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        var family = config.Family;
        _attention = new MultiHeadAttention(config, layerIndex, device: device, dtype: dtype, rotary: rotary);
        _mlp = new GatedMlp(family.Mlp(config), "mlp", device, dtype);
        var names = family.Norms;
        RmsNorm? Make(string hfName) => new[] { names.BeforeAttention, names.AfterAttention, names.BeforeMlp, names.AfterMlp }.Contains(hfName)
            ? new RmsNorm(config.HiddenSize, config.RmsNormEps, hfName, device, dtype, family.NormKind) : null;
        _inputLayernorm = Make("input_layernorm");
        _postAttentionLayernorm = Make("post_attention_layernorm");
        _preFeedforwardLayernorm = Make("pre_feedforward_layernorm");
        _postFeedforwardLayernorm = Make("post_feedforward_layernorm");
        RegisterComponents();
        var byName = new[] { _inputLayernorm, _postAttentionLayernorm, _preFeedforwardLayernorm, _postFeedforwardLayernorm }
            .OfType<RmsNorm>().ToDictionary(n => n.GetName());
        RmsNorm? At(string? hfName) => hfName is null ? null : byName[hfName];
        (_norm1, _norm2, _norm3, _norm4) = (At(names.BeforeAttention), At(names.AfterAttention), At(names.BeforeMlp), At(names.AfterMlp));
    }

    /// <summary>The layer's attention.</summary>
    public MultiHeadAttention Attention => _attention;

    /// <summary>The layer's feed-forward block.</summary>
    internal GatedMlp Mlp => _mlp;

    /// <summary>Causal self-attention block over x [B, T, hidden] at positions 0..T-1, no cache.</summary>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = x + AfterAttention(_attention.forward(BeforeAttention(x)));
        return (h + MlpPart(h)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The block over x [B, T, hidden] with RoPE tables [B, T, RotaryDim] (null for a layer without RoPE), an optional
    /// mask [B, 1, T, S] and an optional cache (see <see cref="MultiHeadAttention.forward(Tensor, Tensor?, Tensor?, Tensor?, KvCache?)"/>).
    /// </summary>
    public Tensor forward(Tensor x, Tensor? cos, Tensor? sin, Tensor? mask, KvCache? cache)
    {
        using var scope = NewDisposeScope();
        var h = x + AfterAttention(_attention.forward(BeforeAttention(x), cos, sin, mask, cache));
        return (h + MlpPart(h)).MoveToOuterDisposeScope();
    }

    /// <summary>norm1(x), or x where the family has no norm in front of attention.</summary>
    internal Tensor BeforeAttention(Tensor x) => _norm1?.forward(x) ?? x;

    /// <summary>norm2(y) of the attention's output y, or y.</summary>
    internal Tensor AfterAttention(Tensor y) => _norm2?.forward(y) ?? y;

    /// <summary>mlp(norm3(h)) without norm4: a tensor-parallel rank's share of the MLP is summed before norm4.</summary>
    internal Tensor MlpShare(Tensor h) => _mlp.forward(_norm3?.forward(h) ?? h);

    /// <summary>norm4(y) of the MLP's output y, or y.</summary>
    internal Tensor AfterMlp(Tensor y) => _norm4?.forward(y) ?? y;

    private Tensor MlpPart(Tensor h) => AfterMlp(MlpShare(h));
}
