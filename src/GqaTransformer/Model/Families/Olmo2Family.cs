namespace GqaTransformer;

/// <summary>
/// OLMo 2: norms behind attention and MLP only (<c>h = x + norm(attn(x))</c>), an RMSNorm over the whole q and k
/// projections before RoPE, and norms that weight before casting back.
/// </summary>
internal sealed class Olmo2Family : ModelFamily
{
    public override IReadOnlyList<string> ModelTypes { get; } = ["olmo2"];
    public override IReadOnlyList<string> Architectures { get; } = ["Olmo2ForCausalLM"];

    public override RmsNormKind NormKind => RmsNormKind.WeightFirst;
    public override LayerNormNames Norms => LayerNormNames.PostNorm;
    public override QkNorm QkNorm => QkNorm.WholeProjection;
}
