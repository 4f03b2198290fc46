namespace GqaTransformer;

/// <summary>Qwen2 and Qwen2.5: biases on q, k and v (never on o); with <c>use_sliding_window</c>, layers from <c>max_window_layers</c> on slide.</summary>
internal sealed class Qwen2Family : ModelFamily
{
    public override IReadOnlyList<string> ModelTypes { get; } = ["qwen2"];
    public override IReadOnlyList<string> Architectures { get; } = ["Qwen2ForCausalLM"];

    public override bool QkvBias(DecoderConfig config) => true;
    public override bool OutputBias(DecoderConfig config) => false;
    public override bool IsSlidingLayer(DecoderConfig config, int layer) => Qwen3Family.Slides(config, layer);
}
