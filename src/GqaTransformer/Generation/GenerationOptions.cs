namespace GqaTransformer;

/// <summary>How <see cref="TokenGenerator"/> picks tokens and when it stops. Checked by <see cref="Validate"/> before any work.</summary>
public sealed record GenerationOptions
{
    /// <summary>Most tokens to generate per sequence. Default 128.</summary>
    public int MaxNewTokens { get; init; } = 128;

    /// <summary>Token ids that end a sequence (the stop token is emitted, then the sequence stops). Null: the config's eos_token_id.</summary>
    public IReadOnlyList<int>? StopTokenIds { get; init; }

    /// <summary>Softmax temperature. 0 (the default) is greedy decoding: always the most likely token.</summary>
    public double Temperature { get; init; }

    /// <summary>Sample only among the k most likely tokens. 0 (the default) disables it.</summary>
    public int TopK { get; init; }

    /// <summary>Sample only from the smallest set of most likely tokens whose probabilities add up to at least p. 1 disables it.</summary>
    public double TopP { get; init; } = 1.0;

    /// <summary>HF's repetition penalty: logits of tokens already in the sequence are divided by it (multiplied if negative). 1 disables it.</summary>
    public double RepetitionPenalty { get; init; } = 1.0;

    /// <summary>
    /// OpenAI's and vLLM's frequency penalty: each token's logit is lowered by this times the number of times the sequence
    /// has generated it (the prompt not counted). In [-2, 2]; 0 disables it.
    /// </summary>
    public double FrequencyPenalty { get; init; }

    /// <summary>
    /// OpenAI's and vLLM's presence penalty: the logit of each token the sequence has generated at least once is lowered
    /// by this. In [-2, 2]; 0 disables it.
    /// </summary>
    public double PresencePenalty { get; init; }

    /// <summary>Seed of the sampler; the same seed gives the same tokens (on the CPU). Null: a random seed.</summary>
    public ulong? Seed { get; init; }

    /// <summary>
    /// On CUDA, replay each decode step from a captured CUDA graph where <see cref="CudaGraphs"/> are available (one
    /// launch per step instead of hundreds); elsewhere, or for a sliding-window cache, decoding is eager. Default true.
    /// Greedy tokens are the same either way.
    /// </summary>
    public bool UseCudaGraphs { get; init; } = true;

    /// <summary>Whether tokens are sampled rather than picked greedily.</summary>
    public bool IsSampling => Temperature > 0;

    /// <summary>Greedy decoding of up to <paramref name="maxNewTokens"/> tokens.</summary>
    public static GenerationOptions Greedy(int maxNewTokens) => new() { MaxNewTokens = maxNewTokens };

    /// <summary>Whether the repetition penalty is on: the sampler needs the tokens each sequence holds.</summary>
    internal bool PenalisesRepetition => RepetitionPenalty != 1.0;

    /// <summary>Whether the frequency or presence penalty is on: the sampler needs the counts of generated tokens.</summary>
    internal bool PenalisesGeneratedTokens => FrequencyPenalty != 0 || PresencePenalty != 0;

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first option out of range.</summary>
    public GenerationOptions Validate()
    {
        if (MaxNewTokens <= 0)
            throw new ArgumentOutOfRangeException(nameof(MaxNewTokens), MaxNewTokens, $"MaxNewTokens must be positive, but was {MaxNewTokens}.");
        if (!(Temperature >= 0) || double.IsInfinity(Temperature))
            throw new ArgumentOutOfRangeException(nameof(Temperature), Temperature, $"Temperature must be 0 (greedy) or a positive finite number, but was {Temperature}.");
        if (TopK < 0)
            throw new ArgumentOutOfRangeException(nameof(TopK), TopK, $"TopK must be 0 (off) or positive, but was {TopK}.");
        if (!(TopP > 0 && TopP <= 1))
            throw new ArgumentOutOfRangeException(nameof(TopP), TopP, $"TopP must be in (0, 1], but was {TopP}.");
        if (!(RepetitionPenalty > 0) || double.IsInfinity(RepetitionPenalty))
            throw new ArgumentOutOfRangeException(nameof(RepetitionPenalty), RepetitionPenalty, $"RepetitionPenalty must be a positive finite number, but was {RepetitionPenalty}.");
        if (!(FrequencyPenalty >= -2 && FrequencyPenalty <= 2))
            throw new ArgumentOutOfRangeException(nameof(FrequencyPenalty), FrequencyPenalty, $"FrequencyPenalty must be in [-2, 2], but was {FrequencyPenalty}.");
        if (!(PresencePenalty >= -2 && PresencePenalty <= 2))
            throw new ArgumentOutOfRangeException(nameof(PresencePenalty), PresencePenalty, $"PresencePenalty must be in [-2, 2], but was {PresencePenalty}.");
        return this;
    }
}
