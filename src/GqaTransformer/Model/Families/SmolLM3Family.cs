namespace GqaTransformer;

/// <summary>
/// SmolLM3: Llama's layers, but some without RoPE: <c>no_rope_layers[i] == 0</c> means layer i has none (the name
/// misleads), by default every <c>no_rope_layer_interval</c>-th (4th) layer.
/// </summary>
internal sealed class SmolLM3Family : ModelFamily
{
    public override IReadOnlyList<string> ModelTypes { get; } = ["smollm3"];
    public override IReadOnlyList<string> Architectures { get; } = ["SmolLM3ForCausalLM"];

    public override RotarySpec? Rotary(DecoderConfig config, int layer) => UsesRope(config, layer) ? base.Rotary(config, layer) : null;

    public override bool IsSlidingLayer(DecoderConfig config, int layer) => config.UseSlidingWindow == true && !UsesRope(config, layer);

    private static bool UsesRope(DecoderConfig config, int layer) => config.NoRopeLayers is { } flags
        ? flags[layer] != 0
        : (layer + 1) % (config.NoRopeLayerInterval ?? 4) != 0;

    public override void Validate(DecoderConfig config)
    {
        if (config.NoRopeLayers is { } flags && flags.Count != config.NumHiddenLayers)
            throw new ArgumentException($"no_rope_layers must hold one flag per layer ({config.NumHiddenLayers}), but holds {flags.Count}.", "config");
        if (config.NoRopeLayerInterval is <= 0)
            throw new ArgumentException($"no_rope_layer_interval must be positive, but was {config.NoRopeLayerInterval}.", "config");
        base.Validate(config);
    }
}
