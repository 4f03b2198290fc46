namespace GqaTransformer;

/// <summary>Llama 2, 3, 3.1, 3.2, 3.3: the reference every other family states its differences from.</summary>
internal sealed class LlamaFamily : ModelFamily
{
    public override IReadOnlyList<string> ModelTypes { get; } = ["llama"];
    public override IReadOnlyList<string> Architectures { get; } = ["LlamaForCausalLM"];
}
