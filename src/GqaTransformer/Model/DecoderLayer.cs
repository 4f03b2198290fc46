using TorchSharp;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>
/// One pre-norm decoder block: <c>h = x + attn(norm1(x)); return h + mlp(norm2(h))</c>. Parameter names are HF's:
/// <c>input_layernorm</c>, <c>self_attn</c>, <c>post_attention_layernorm</c>, <c>mlp</c>.
/// </summary>
public sealed class DecoderLayer : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "input_layernorm")] private readonly RmsNorm _inputNorm;
    [ComponentName(Name = "self_attn")] private readonly MultiHeadAttention _attention;
    [ComponentName(Name = "post_attention_layernorm")] private readonly RmsNorm _postAttentionNorm;
    [ComponentName(Name = "mlp")] private readonly SwiGluMlp _mlp;

    /// <summary>Creates layer <paramref name="layerIndex"/> of a model described by <paramref name="config"/>.</summary>
    /// <param name="config">The model's config.</param>
    /// <param name="layerIndex">The layer's index (and its layer in a <see cref="KvCache"/>).</param>
    /// <param name="name">Module name.</param>
    /// <param name="device">Device of the weights (default CPU).</param>
    /// <param name="dtype">Element type of the weights (default float32).</param>
    /// <param name="rotary">The model's RoPE table, shared by its layers; null creates one for this layer.</param>
    public DecoderLayer(DecoderConfig config, int layerIndex = 0, string name = "layer", Device? device = null, ScalarType? dtype = null,
        RotaryEmbedding? rotary = null) : base(TorchBackend.Checked(name))
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        _inputNorm = new RmsNorm(config.HiddenSize, config.RmsNormEps, "input_layernorm", device, dtype);
        _attention = new MultiHeadAttention(config, layerIndex, device: device, dtype: dtype, rotary: rotary);
        _postAttentionNorm = new RmsNorm(config.HiddenSize, config.RmsNormEps, "post_attention_layernorm", device, dtype);
        _mlp = new SwiGluMlp(config.HiddenSize, config.IntermediateSize, device: device, dtype: dtype);
        RegisterComponents();
    }

    /// <summary>The layer's attention.</summary>
    public MultiHeadAttention Attention => _attention;

    /// <summary>The layer's feed-forward block.</summary>
    internal SwiGluMlp Mlp => _mlp;

    /// <summary>The norm before attention (norm1).</summary>
    internal RmsNorm InputNorm => _inputNorm;

    /// <summary>The norm before the feed-forward block (norm2).</summary>
    internal RmsNorm PostAttentionNorm => _postAttentionNorm;

    /// <summary>Causal self-attention block over x [B, T, hidden] at positions 0..T-1, no cache.</summary>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = x + _attention.forward(_inputNorm.forward(x));
        return (h + _mlp.forward(_postAttentionNorm.forward(h))).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The block over x [B, T, hidden] with RoPE tables [B, T, headDim], an optional mask [B, 1, T, S] and an
    /// optional cache (see <see cref="MultiHeadAttention.forward(Tensor, Tensor, Tensor, Tensor?, KvCache?)"/>).
    /// </summary>
    public Tensor forward(Tensor x, Tensor cos, Tensor sin, Tensor? mask, KvCache? cache)
    {
        using var scope = NewDisposeScope();
        var h = x + _attention.forward(_inputNorm.forward(x), cos, sin, mask, cache);
        return (h + _mlp.forward(_postAttentionNorm.forward(h))).MoveToOuterDisposeScope();
    }
}
