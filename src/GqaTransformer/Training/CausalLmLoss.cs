using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>
/// The causal language-modelling loss: the mean cross-entropy of predicting token t + 1 from positions 0..t, over every
/// position whose next token is not <see cref="IgnoreIndex"/> (padding), in float32 whatever the logits' dtype, as
/// transformers' <c>ForCausalLMLoss</c> computes it.
/// </summary>
public static class CausalLmLoss
{
    /// <summary>Label value that is not predicted (transformers' -100).</summary>
    public const long IgnoreIndex = -100;

    /// <summary>Mean loss of <paramref name="logits"/> [B, T, vocab] against <paramref name="labels"/> [B, T] (usually the input ids).</summary>
    public static Tensor Compute(Tensor logits, Tensor labels)
    {
        var (sum, count) = Sum(logits, labels);
        using (sum)
        using (count)
            return (sum / count.clamp_min(1)).squeeze();
    }

    /// <summary>Summed loss and the number of predicted positions (for means over many batches).</summary>
    public static (Tensor Sum, Tensor Count) Sum(Tensor logits, Tensor labels)
    {
        Guard.Rank(logits, 3, nameof(logits), "[batch, tokens, vocab]");
        Guard.Rank(labels, 2, nameof(labels), "[batch, tokens]");
        if (labels.size(0) != logits.size(0) || labels.size(1) != logits.size(1))
            throw new ArgumentException($"labels must be [{logits.size(0)}, {logits.size(1)}], but are {Guard.Shape(labels)}.", nameof(labels));
        if (labels.dtype != ScalarType.Int64 && labels.dtype != ScalarType.Int32)
            throw new ArgumentException($"labels must be int64 or int32 token ids, but have dtype {labels.dtype}.", nameof(labels));
        using var scope = NewDisposeScope();
        long vocab = logits.size(2), t = logits.size(1);
        var predicted = logits.narrow(1, 0, t - 1).reshape(-1, vocab).to(ScalarType.Float32); // positions 0..T-2
        var targets = labels.narrow(1, 1, t - 1).reshape(-1).to(ScalarType.Int64);           // tokens 1..T-1
        var sum = nn.functional.cross_entropy(predicted, targets, ignore_index: IgnoreIndex, reduction: nn.Reduction.Sum);
        var count = targets.ne(IgnoreIndex).sum().to(ScalarType.Float32);
        return (sum.MoveToOuterDisposeScope(), count.MoveToOuterDisposeScope());
    }
}
