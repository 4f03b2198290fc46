namespace GqaTransformer;

/// <summary>
/// Phi-3, Phi-3.5, Phi-4-mini: q/k/v stored as one <c>qkv_proj</c> (q, then k, then v) and gate/up as one
/// <c>gate_up_proj</c>; partial rotary (the first <c>head_dim · partial_rotary_factor</c> dimensions rotate); LongRoPE
/// switched by <c>original_max_position_embeddings</c>; a <c>sliding_window</c> slides every layer.
/// </summary>
internal sealed class Phi3Family : ModelFamily
{
    public override IReadOnlyList<string> ModelTypes { get; } = ["phi3"];
    public override IReadOnlyList<string> Architectures { get; } = ["Phi3ForCausalLM"];

    public override bool FusedProjections => true;

    public override RotarySpec? Rotary(DecoderConfig config, int layer) => new(
        config.HeadDim, (int)(config.HeadDim * (config.PartialRotaryFactor ?? 1.0)), config.RopeTheta, config.RopeScaling,
        config.OriginalMaxPositionEmbeddings ?? config.RopeScaling?.OriginalMaxPositionEmbeddings, config.MaxPositionEmbeddings);
}
