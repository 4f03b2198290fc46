namespace GqaTransformer;

/// <summary>
/// How an RMSNorm applies its weight to the normalised x̂ = x32 · rsqrt(mean(x32²) + eps), x32 being x in float32:
/// the families differ only in this (ADR 0021).
/// </summary>
public enum RmsNormKind
{
    /// <summary>Llama, Qwen, Mistral, Phi-3, SmolLM3: <c>w · x̂.to(dtype)</c> (cast back before the weight).</summary>
    Llama,

    /// <summary>OLMo 2: <c>(w · x̂).to(dtype)</c> (the weight first, then the cast).</summary>
    WeightFirst,

    /// <summary>Gemma 2 and 3: <c>((1 + w) · x̂).to(dtype)</c> in float32; the weight starts at zero.</summary>
    OnePlusWeight,
}
