namespace GqaTransformer;

/// <summary>
/// Gemma 3 (text): Gemma 2 with a per-head RMSNorm on q and k before RoPE, five sliding layers to one full
/// (<c>sliding_window_pattern</c>, default 6), and a RoPE of its own for sliding layers (<c>rope_local_base_freq</c>,
/// unscaled); <c>rope_theta</c> and <c>rope_scaling</c> are the full layers'.
/// </summary>
internal sealed class Gemma3Family : Gemma2Family
{
    public override IReadOnlyList<string> ModelTypes { get; } = ["gemma3_text"];
    public override IReadOnlyList<string> Architectures { get; } = ["Gemma3ForCausalLM"];

    public override QkNorm QkNorm => QkNorm.PerHead;
    public override bool IsSlidingLayer(DecoderConfig config, int layer) => (layer + 1) % (config.SlidingWindowPattern ?? 6) != 0;

    public override RotarySpec? Rotary(DecoderConfig config, int layer) => config.IsSlidingLayer(layer)
        ? new(config.HeadDim, config.HeadDim, config.RopeLocalBaseFreq ?? 10_000.0, null)
        : base.Rotary(config, layer);

    public override void Validate(DecoderConfig config)
    {
        if (config.SlidingWindowPattern is <= 0)
            throw new ArgumentException($"sliding_window_pattern must be positive, but was {config.SlidingWindowPattern}.", "config");
        base.Validate(config);
    }
}
