namespace GqaTransformer;

/// <summary>Mistral, Mistral Nemo, Ministral: Llama's layers; a <c>sliding_window</c> slides every layer.</summary>
internal sealed class MistralFamily : ModelFamily
{
    public override IReadOnlyList<string> ModelTypes { get; } = ["mistral"];
    public override IReadOnlyList<string> Architectures { get; } = ["MistralForCausalLM"];
}
