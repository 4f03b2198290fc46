namespace GqaTransformer;

/// <summary>
/// Qwen3: an RMSNorm of [head_dim] on each head of q and of k before RoPE (<c>q_norm</c>, <c>k_norm</c>), head_dim
/// given on its own, <c>attention_bias</c> on all four projections; sliding as Qwen2.
/// </summary>
internal sealed class Qwen3Family : ModelFamily
{
    public override IReadOnlyList<string> ModelTypes { get; } = ["qwen3"];
    public override IReadOnlyList<string> Architectures { get; } = ["Qwen3ForCausalLM"];

    public override QkNorm QkNorm => QkNorm.PerHead;
    public override bool IsSlidingLayer(DecoderConfig config, int layer) => Slides(config, layer);

    /// <summary>Qwen's rule: with <c>use_sliding_window</c>, layers from <c>max_window_layers</c> (default 28) on slide.</summary>
    internal static bool Slides(DecoderConfig config, int layer) => config.UseSlidingWindow == true && layer >= (config.MaxWindowLayers ?? 28);
}
