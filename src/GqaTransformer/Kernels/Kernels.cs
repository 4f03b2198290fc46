using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>
/// The seam between the blocks and the code that runs them: one method per operation, and the one place where an
/// implementation is chosen (ADR 0012). The blocks (<see cref="RmsNorm"/>, <see cref="RotaryEmbedding"/>,
/// <see cref="GatedMlp"/>, <see cref="MultiHeadAttention"/>, <see cref="DecoderModel"/>) call these and hold only the
/// maths. Each operation runs the first implementation that takes its inputs; the last is always the block's own
/// libtorch form, the reference every kernel is tested against. Another backend (a CUDA kernel, say) is one more line
/// here, not a branch in a block.
/// </summary>
internal static class Kernels
{
    /// <summary><c>y = x·Wᵀ + b</c> for a <see cref="TorchSharp.Modules.Linear"/> layer.</summary>
    public static Tensor Linear(Linear layer, Tensor x) => Linear(x, layer.weight, layer.bias);

    /// <summary><c>y = x·Wᵀ (+ b)</c>: x [..., K], W [N, K] → [..., N].</summary>
    public static Tensor Linear(Tensor x, Tensor weight, Tensor? bias = null)
        => bias is null && DecodeLinear.Supports(x, weight) ? DecodeLinear.Product(x, weight)   // one token on the CPU (ADR 0009)
         : nn.functional.linear(x, weight, bias);

    /// <summary>The products <c>x·Wᵀ (+ b)</c> of layers that read the same x, one per layer: on CUDA one fused product (ADR 0015).</summary>
    public static Tensor[] Linear(FusedLinears group, Tensor x)
        => group.For(x) is { } fused ? group.Split(Linear(x, fused.Weight, fused.Bias))
         : [.. group.Layers.Select(layer => Linear(layer, x))];

    /// <summary>RMSNorm over the last dimension (see <see cref="GqaTransformer.RmsNorm"/>).</summary>
    public static Tensor RmsNorm(Tensor x, Tensor weight, double eps, RmsNormKind kind = RmsNormKind.Llama)
        => SmallCpuOps.Supports(x, weight) ? SmallCpuOps.RmsNorm(x, weight, eps, kind)                        // a decode step's few values (ADR 0007)
         : kind == RmsNormKind.Llama && CudaOps.SupportsRmsNorm(x, weight) ? CudaOps.RmsNorm(x, weight, eps)  // two launches, not seven (ADR 0015)
         : GqaTransformer.RmsNorm.Reference(x, weight, eps, kind);

    /// <summary>RoPE on queries [B, H, T, D] and keys [B, Hkv, T, D] (see <see cref="RotaryEmbedding.Apply"/>).</summary>
    public static (Tensor Query, Tensor Key) Rotary(Tensor query, Tensor key, Tensor cos, Tensor sin)
        => SmallCpuOps.SupportsRotary(query, key, cos, sin) ? SmallCpuOps.Rotary(query, key, cos, sin) // a decode step (ADR 0007)
         : RotaryEmbedding.Reference(query, key, cos, sin);

    /// <summary>
    /// One decode step of grouped attention: the G query heads of each group folded into [B, Hkv, G, D] over the
    /// group's keys and values [B, Hkv, S, D] (in the cache's dtype, which may differ from the queries'), returned as
    /// [B, Hkv, G, D] in <paramref name="outputDtype"/>.
    /// </summary>
    public static Tensor DecodeAttention(Tensor folded, Tensor key, Tensor value, Tensor? mask, ScalarType outputDtype, AttentionScoring scoring)
        => FusedCpuDecode.Supports(folded, key, value, mask)
            ? FusedCpuDecode.Run(folded, key, value, outputDtype, scoring.Scale, scoring.Softcap)   // one pass over the cache (ADR 0006)
         : MultiHeadAttention.DecodeByMatmul(folded.to(key.dtype), key, value, mask, scoring).to(outputDtype);

    /// <summary>Grouped attention over a block of T &gt; 1 queries [B, H, T, D] (a prompt), see <see cref="MultiHeadAttention.GroupedScaledDotProduct"/>.</summary>
    public static Tensor PrefillAttention(Tensor query, Tensor key, Tensor value, Tensor? mask, bool causal, AttentionScoring scoring)
        => scoring.Softcap is not null ? MultiHeadAttention.PrefillByMatmul(query, key, value, mask, causal, scoring) // SDPA has no cap
         : scoring.IsPlain(query.size(-1)) ? MultiHeadAttention.PrefillBySdpa(query, key, value, mask, causal)
         : MultiHeadAttention.PrefillBySdpa(query * (scoring.Scale * Math.Sqrt(query.size(-1))), key, value, mask, causal); // SDPA scales by D^-½ itself
}
