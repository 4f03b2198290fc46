using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>The mean causal-LM loss of a model over some text, and its perplexity.</summary>
/// <param name="Loss">Mean cross-entropy per predicted token (nats).</param>
/// <param name="Tokens">Predicted tokens counted.</param>
public sealed record EvaluationResult(double Loss, long Tokens)
{
    /// <summary>e^Loss.</summary>
    public double Perplexity => Math.Exp(Loss);
}

/// <summary>Held-out loss and perplexity of a <see cref="DecoderModel"/>.</summary>
public static class Evaluation
{
    /// <summary>
    /// Mean loss over <paramref name="sequences"/> (each predicts its tokens 1..T-1 from the ones before), run in batches
    /// of <paramref name="batchSize"/> without autograd.
    /// </summary>
    public static EvaluationResult Evaluate(DecoderModel model, IEnumerable<long[]> sequences, int batchSize = 8, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(sequences);
        Guard.Positive(batchSize, nameof(batchSize));
        double sum = 0;
        long count = 0;
        var device = model.Device;
        foreach (var batch in sequences.Chunk(batchSize))
        {
            cancellationToken.ThrowIfCancellationRequested();
            int length = batch[0].Length;
            if (batch.Any(s => s.Length != length))
                throw new ArgumentException("Every sequence of a batch must have the same length.", nameof(sequences));
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            var ids = tensor(batch.SelectMany(s => s).ToArray(), device: device).view(batch.Length, length);
            var (lossSum, tokens) = CausalLmLoss.Sum(model.forward(ids), ids);
            sum += lossSum.item<float>();
            count += (long)tokens.item<float>();
        }
        if (count == 0) throw new ArgumentException("The sequences hold no token to predict.", nameof(sequences));
        return new EvaluationResult(sum / count, count);
    }
}
