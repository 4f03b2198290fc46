using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>
/// How attention turns q·kᵀ into scores: times <see cref="Scale"/> (head_dim^-½, or Gemma's
/// query_pre_attn_scalar^-½), then, where <see cref="Softcap"/> is set (Gemma 2), <c>cap · tanh(s / cap)</c>.
/// </summary>
internal readonly record struct AttentionScoring(double Scale, double? Softcap)
{
    /// <summary>Llama's scores: q·kᵀ / √headDim, no cap.</summary>
    public static AttentionScoring Plain(long headDim) => new(1.0 / Math.Sqrt(headDim), null);

    /// <summary>Whether these are Llama's scores for heads of <paramref name="headDim"/> (what SDPA computes).</summary>
    public bool IsPlain(long headDim) => Softcap is null && Math.Abs(Scale * Math.Sqrt(headDim) - 1.0) < 1e-12;

    /// <summary>The soft-cap on <paramref name="scores"/>, or the scores themselves.</summary>
    public Tensor Cap(Tensor scores) => Softcap is { } cap ? (scores / cap).tanh_().mul_(cap) : scores;
}
