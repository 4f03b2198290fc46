using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>
/// Turns next-token logits into token ids, in HF's order: repetition penalty (then vLLM's frequency and presence
/// penalties), temperature, top-k, top-p, then argmax (greedy) or a draw from the distribution with a seeded CPU generator.
/// </summary>
public sealed class TokenSampler : IDisposable
{
    private readonly GenerationOptions _options;
    private readonly torch.Generator? _random;

    /// <summary>Creates a sampler for <paramref name="options"/> (validated here).</summary>
    public TokenSampler(GenerationOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options.Validate();
        if (options.IsSampling)
            _random = new torch.Generator(options.Seed ?? (ulong)Random.Shared.NextInt64());
    }

    /// <summary>
    /// Picks one token per row of <paramref name="logits"/> [B, V], on any device. <paramref name="seen"/> [B, V] bool
    /// marks tokens already in each sequence (for the repetition penalty); null when the penalty is off.
    /// <paramref name="generatedCounts"/> [B, V] counts each sequence's generated tokens (for the frequency and presence
    /// penalties; <see cref="GenerationSession.GeneratedTokenCounts"/>); null when they are off. Greedy choice without a
    /// penalty takes the argmax where the logits are and copies only the ids; the rest runs on the CPU in float32.
    /// </summary>
    public long[] Sample(Tensor logits, Tensor? seen = null, Tensor? generatedCounts = null)
    {
        Guard.Rank(logits, 2, nameof(logits), "[batch, vocab]");
        using var scope = NewDisposeScope();
        bool penalise = _options.PenalisesRepetition && seen is not null;
        bool penaliseCounts = _options.PenalisesGeneratedTokens && generatedCounts is not null;
        if (generatedCounts is not null && !generatedCounts.shape.SequenceEqual(logits.shape))
            throw new ArgumentException($"generatedCounts must be [{string.Join(", ", logits.shape)}] like the logits, but is {Guard.Shape(generatedCounts)}.", nameof(generatedCounts));
        if (!_options.IsSampling && !penalise && !penaliseCounts)
        {
            // float32 and bf16 share their argmax (the widening is exact); the ids and whether every logit is finite come
            // back in one read, so a GPU step synchronises once
            var idsAndFinite = cat([logits.argmax(-1), isfinite(logits).all().to(ScalarType.Int64).view(1)]).to(CPU).data<long>().ToArray();
            if (idsAndFinite[^1] == 0) throw new NonFiniteLogitsException();
            return idsAndFinite[..^1];
        }
        var scores = logits.to(ScalarType.Float32, CPU);
        if (!isfinite(scores).all().item<bool>())                       // the widening keeps NaN and infinities
            throw new NonFiniteLogitsException();
        if (penalise)
        {
            var penalised = where(scores < 0, scores * _options.RepetitionPenalty, scores / _options.RepetitionPenalty);
            scores = where(seen!.to(CPU), penalised, scores);
        }
        if (penaliseCounts)
        {
            var counts = generatedCounts!.to(ScalarType.Float32, CPU);
            scores = scores - counts * _options.FrequencyPenalty - (counts > 0).to(ScalarType.Float32) * _options.PresencePenalty;
        }
        if (!_options.IsSampling)
            return scores.argmax(-1).data<long>().ToArray();

        scores = scores / _options.Temperature;
        scores = FilterTopK(scores, _options.TopK);
        scores = FilterTopP(scores, _options.TopP);
        var probabilities = scores.softmax(-1);
        return multinomial(probabilities, 1, generator: _random).view(-1).data<long>().ToArray();
    }

    /// <summary>Keeps the k largest logits of each row; the rest become -inf. k = 0 keeps all.</summary>
    public static Tensor FilterTopK(Tensor scores, int k)
    {
        if (k <= 0 || k >= scores.shape[^1]) return scores.alias();
        using var scope = NewDisposeScope();
        var kth = scores.topk(k, -1).values.narrow(-1, k - 1, 1); // [B, 1]
        return scores.masked_fill(scores < kth, double.NegativeInfinity).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Keeps, in each row, the smallest set of most likely tokens whose probabilities sum to at least p
    /// (always at least one token); the rest become -inf. p = 1 keeps all.
    /// </summary>
    public static Tensor FilterTopP(Tensor scores, double p)
    {
        if (p >= 1.0) return scores.alias();
        using var scope = NewDisposeScope();
        var (sorted, order) = scores.sort(-1, descending: true);
        var probabilities = sorted.softmax(-1);
        var before = probabilities.cumsum(-1) - probabilities;   // mass of the more likely tokens
        var dropSorted = before >= p;                            // already reached p without this token
        var drop = zeros_like(dropSorted).scatter_(-1, order, dropSorted);
        return scores.masked_fill(drop, double.NegativeInfinity).MoveToOuterDisposeScope();
    }

    /// <summary>Releases the random generator.</summary>
    public void Dispose() => _random?.Dispose();
}

/// <summary>
/// The model produced NaN or infinite logits: a weight or an input holds NaN/Inf, or half precision overflowed. The
/// tokens read in that forward are in the cache with non-finite keys or values; reset or rewind it before reusing it.
/// </summary>
public sealed class NonFiniteLogitsException : InvalidOperationException
{
    /// <summary>Creates the exception with the standard explanation.</summary>
    public NonFiniteLogitsException()
        : base("The model produced NaN or infinite logits: a weight or an input holds NaN/Inf, or half precision overflowed. "
               + "The tokens of that step are in the KV cache; reset or rewind the cache before using it again.")
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    public NonFiniteLogitsException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and a cause.</summary>
    public NonFiniteLogitsException(string message, Exception innerException) : base(message, innerException) { }
}
