namespace GqaTransformer;

/// <summary>
/// Gemma 2: RMSNorms as <c>(1 + w) · x̂</c> in float32; a norm before and after attention and MLP; GELU-tanh gate;
/// embeddings × √hidden; scores × <c>query_pre_attn_scalar</c>^-½, soft-capped, as are the final logits; even layers slide.
/// </summary>
internal class Gemma2Family : ModelFamily
{
    public override IReadOnlyList<string> ModelTypes { get; } = ["gemma2"];
    public override IReadOnlyList<string> Architectures { get; } = ["Gemma2ForCausalLM"];

    public override RmsNormKind NormKind => RmsNormKind.OnePlusWeight;
    public override LayerNormNames Norms => LayerNormNames.Sandwich;
    public override string Activation(DecoderConfig config) => config.HiddenActivation ?? config.HiddenAct ?? "gelu_pytorch_tanh";
    public override double AttentionScale(DecoderConfig config) => 1.0 / Math.Sqrt(config.QueryPreAttnScalar ?? config.HeadDim);
    public override double? AttentionSoftcap(DecoderConfig config) => config.AttnLogitSoftcapping;
    public override double? FinalSoftcap(DecoderConfig config) => config.FinalLogitSoftcapping;
    public override double? EmbeddingScale(DecoderConfig config) => Math.Sqrt(config.HiddenSize);
    public override bool IsSlidingLayer(DecoderConfig config, int layer) => layer % 2 == 0;

    public override void Validate(DecoderConfig config)
    {
        base.Validate(config);
        foreach (var (value, field) in new[] { (config.QueryPreAttnScalar, "query_pre_attn_scalar"),
                     (config.AttnLogitSoftcapping, "attn_logit_softcapping"), (config.FinalLogitSoftcapping, "final_logit_softcapping") })
            if (value is { } v && (!(v > 0) || double.IsInfinity(v)))
                throw new ArgumentException($"{field} must be a positive finite number or absent, but was {v}.", "config");
    }
}
