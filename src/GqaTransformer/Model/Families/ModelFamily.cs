namespace GqaTransformer;

/// <summary>
/// A model family: what it changes from Llama, as HF's modular files state it (ADR 0021). Each family is one small
/// subclass that overrides only where it differs; the blocks receive the resulting parts at construction
/// (<see cref="AttentionParts"/>, <see cref="MlpParts"/>, <see cref="LayerNormNames"/>) and never ask which family
/// they belong to. <see cref="All"/> is the registry: what <see cref="DecoderConfig.SupportedModelTypes"/> lists.
/// </summary>
internal abstract class ModelFamily
{
    /// <summary>Every family this library runs.</summary>
    public static IReadOnlyList<ModelFamily> All { get; } =
        [new LlamaFamily(), new MistralFamily(), new Qwen2Family(), new Qwen3Family(), new Gemma2Family(), new Gemma3Family(),
         new Phi3Family(), new SmolLM3Family(), new Olmo2Family()];

    private static readonly Dictionary<string, ModelFamily> s_byModelType =
        All.SelectMany(f => f.ModelTypes.Select(t => (t, f))).ToDictionary(p => p.t, p => p.f, StringComparer.Ordinal);

    /// <summary>The family of <paramref name="modelType"/>.</summary>
    /// <exception cref="NotSupportedException">No family reads that model type.</exception>
    public static ModelFamily For(string modelType) => s_byModelType.TryGetValue(modelType, out var family) ? family
        : throw new NotSupportedException(
            $"model_type '{modelType}' is not supported; supported types are {string.Join(", ", s_byModelType.Keys)}.");

    /// <summary>HF's <c>model_type</c> values of the family.</summary>
    public abstract IReadOnlyList<string> ModelTypes { get; }

    /// <summary>HF's <c>architectures</c> values of the family.</summary>
    public abstract IReadOnlyList<string> Architectures { get; }

    /// <summary>The gate activations HF's ACT2FN names that <see cref="MlpParts"/> computes.</summary>
    public static IReadOnlyList<string> SupportedActivations { get; } = ["silu", "gelu_pytorch_tanh", "gelu_new", "gelu"];

    // ---- config rules -------------------------------------------------------------------------------------------

    /// <summary>Whether layer <paramref name="layer"/> slides when the config has a window and no <c>layer_types</c>.</summary>
    public virtual bool IsSlidingLayer(DecoderConfig config, int layer) => true; // Mistral v0.1: a window slides every layer

    /// <summary>Whether q, k and v carry a bias.</summary>
    public virtual bool QkvBias(DecoderConfig config) => config.AttentionBias;

    /// <summary>Whether o carries a bias.</summary>
    public virtual bool OutputBias(DecoderConfig config) => config.AttentionBias;

    /// <summary>The MLP's gate activation, by HF's name.</summary>
    public virtual string Activation(DecoderConfig config) => config.HiddenAct ?? "silu";

    /// <summary>Throws unless the config holds what this family needs (called by <see cref="DecoderConfig.Validate"/>).</summary>
    public virtual void Validate(DecoderConfig config)
    {
        var activation = Activation(config);
        if (!SupportedActivations.Contains(activation))
            throw new NotSupportedException(
                $"hidden_act '{activation}' is not supported; supported activations are {string.Join(", ", SupportedActivations)}.");
        for (int layer = 0; layer < Math.Min(config.NumHiddenLayers, 64); layer++) // layer patterns repeat well within 64
            Rotary(config, layer)?.Validate();
    }

    // ---- the blocks' parts ---------------------------------------------------------------------------------------

    /// <summary>How every RMSNorm of the model weights its output.</summary>
    public virtual RmsNormKind NormKind => RmsNormKind.Llama;

    /// <summary>Which norms a layer has around attention and MLP, by HF's names.</summary>
    public virtual LayerNormNames Norms => LayerNormNames.PreNorm;

    /// <summary>Whether q and k are RMS-normalised before RoPE, and over what.</summary>
    public virtual QkNorm QkNorm => QkNorm.None;

    /// <summary>Whether the checkpoint holds q/k/v as one <c>qkv_proj</c> and gate/up as one <c>gate_up_proj</c>.</summary>
    public virtual bool FusedProjections => false;

    /// <summary>The factor on q·k: head_dim^-½.</summary>
    public virtual double AttentionScale(DecoderConfig config) => 1.0 / Math.Sqrt(config.HeadDim);

    /// <summary>The cap of <c>cap · tanh(score / cap)</c> on attention scores, or null.</summary>
    public virtual double? AttentionSoftcap(DecoderConfig config) => null;

    /// <summary>The cap on the final logits, or null.</summary>
    public virtual double? FinalSoftcap(DecoderConfig config) => null;

    /// <summary>The factor on the token embeddings, or null.</summary>
    public virtual double? EmbeddingScale(DecoderConfig config) => null;

    /// <summary>The RoPE of layer <paramref name="layer"/>, or null where the layer has none.</summary>
    public virtual RotarySpec? Rotary(DecoderConfig config, int layer)
        => new(config.HeadDim, config.HeadDim, config.RopeTheta, config.RopeScaling,
            config.RopeScaling?.OriginalMaxPositionEmbeddings ?? config.OriginalMaxPositionEmbeddings, config.MaxPositionEmbeddings);

    /// <summary>Everything the attention of layer <paramref name="layer"/> is built from.</summary>
    public AttentionParts Attention(DecoderConfig config, int layer) => new(
        config.HiddenSize, config.NumAttentionHeads, config.NumKeyValueHeads, config.HeadDim, QkvBias(config), OutputBias(config),
        QkNorm, NormKind, config.RmsNormEps, AttentionScale(config), AttentionSoftcap(config), config.WindowOf(layer),
        Rotary(config, layer), FusedProjections);

    /// <summary>Everything the MLP is built from.</summary>
    public MlpParts Mlp(DecoderConfig config) => new(config.HiddenSize, config.IntermediateSize, Activation(config), FusedProjections);
}

/// <summary>Where q/k norms sit: none; per head over head_dim (Qwen3, Gemma 3); over the whole projection (OLMo 2).</summary>
internal enum QkNorm
{
    None,
    PerHead,
    WholeProjection,
}

/// <summary>
/// The HF names of a layer's norms in the four places a norm can sit, null where the family has none:
/// <c>h = x + afterAttention(attn(beforeAttention(x)))</c>, <c>out = h + afterMlp(mlp(beforeMlp(h)))</c>.
/// </summary>
internal sealed record LayerNormNames(string? BeforeAttention, string? AfterAttention, string? BeforeMlp, string? AfterMlp)
{
    /// <summary>Llama: a norm in front of each block.</summary>
    public static LayerNormNames PreNorm { get; } = new("input_layernorm", null, "post_attention_layernorm", null);

    /// <summary>Gemma: a norm in front of and behind each block.</summary>
    public static LayerNormNames Sandwich { get; } =
        new("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm");

    /// <summary>OLMo 2: a norm behind each block only.</summary>
    public static LayerNormNames PostNorm { get; } = new(null, "post_attention_layernorm", null, "post_feedforward_layernorm");
}

/// <summary>The parts of one attention block (see <see cref="MultiHeadAttention"/>).</summary>
internal sealed record AttentionParts(
    int HiddenSize, int NumHeads, int NumKvHeads, int HeadDim, bool QkvBias, bool OutputBias, QkNorm QkNorm, RmsNormKind NormKind,
    double NormEps, double Scale, double? Softcap, int? Window, RotarySpec? Rotary, bool Fused);

/// <summary>The parts of one MLP block (see <see cref="GatedMlp"/>).</summary>
internal sealed record MlpParts(int HiddenSize, int IntermediateSize, string Activation, bool Fused);
