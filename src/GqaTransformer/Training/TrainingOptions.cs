using static TorchSharp.torch;
namespace GqaTransformer;

/// <summary>
/// How <see cref="Trainer"/> trains: AdamW with weight decay on matrices only, a linear warm-up then a cosine decay of
/// the learning rate, gradient clipping and accumulation. Checked by <see cref="Validate"/> before any work.
/// </summary>
public sealed record TrainingOptions
{
    /// <summary>Optimizer steps in all (the schedule's length).</summary>
    public int Steps { get; init; } = 1000;

    /// <summary>Sequences per optimizer step.</summary>
    public int BatchSize { get; init; } = 8;

    /// <summary>Micro-batches per optimizer step: the batch is split into this many forwards, gradients summed. Divides BatchSize.</summary>
    public int AccumulationSteps { get; init; } = 1;

    /// <summary>Peak learning rate, reached at the end of the warm-up.</summary>
    public double LearningRate { get; init; } = 1e-3;

    /// <summary>Learning rate at the end of the cosine decay.</summary>
    public double MinLearningRate { get; init; } = 1e-4;

    /// <summary>Steps of linear warm-up from 0.</summary>
    public int WarmupSteps { get; init; } = 100;

    /// <summary>AdamW's decoupled weight decay, applied to matrices (embeddings and projections), not to norms or biases.</summary>
    public double WeightDecay { get; init; } = 0.1;

    /// <summary>AdamW's β1.</summary>
    public double Beta1 { get; init; } = 0.9;

    /// <summary>AdamW's β2.</summary>
    public double Beta2 { get; init; } = 0.95;

    /// <summary>Largest gradient norm (L2 over all parameters); larger ones are scaled down. 0 turns clipping off.</summary>
    public double ClipNorm { get; init; } = 1.0;

    /// <summary>
    /// Null (default) computes in the model's dtype. <see cref="ScalarType.BFloat16"/> runs the forward's matmuls in
    /// bfloat16 from float32 weights, as <c>torch.autocast("cuda", torch.bfloat16)</c> (CUDA with the native shim only):
    /// the weights, gradients and optimizer state stay float32.
    /// </summary>
    public ScalarType? AutocastDtype { get; init; }

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first option out of range.</summary>
    public TrainingOptions Validate()
    {
        static void Check(bool ok, string name, object value, string expected)
        {
            if (!ok) throw new ArgumentOutOfRangeException(name, value, $"{name} must be {expected}, but was {value}.");
        }
        Check(Steps > 0, nameof(Steps), Steps, "positive");
        Check(BatchSize > 0, nameof(BatchSize), BatchSize, "positive");
        Check(AccumulationSteps > 0 && BatchSize % AccumulationSteps == 0, nameof(AccumulationSteps), AccumulationSteps, $"a positive divisor of BatchSize ({BatchSize})");
        Check(LearningRate > 0 && double.IsFinite(LearningRate), nameof(LearningRate), LearningRate, "positive and finite");
        Check(MinLearningRate >= 0 && MinLearningRate <= LearningRate, nameof(MinLearningRate), MinLearningRate, $"in [0, LearningRate ({LearningRate})]");
        Check(WarmupSteps >= 0 && WarmupSteps <= Steps, nameof(WarmupSteps), WarmupSteps, $"in [0, Steps ({Steps})]");
        Check(WeightDecay >= 0 && double.IsFinite(WeightDecay), nameof(WeightDecay), WeightDecay, "non-negative and finite");
        Check(Beta1 is >= 0 and < 1, nameof(Beta1), Beta1, "in [0, 1)");
        Check(Beta2 is >= 0 and < 1, nameof(Beta2), Beta2, "in [0, 1)");
        Check(ClipNorm >= 0 && double.IsFinite(ClipNorm), nameof(ClipNorm), ClipNorm, "0 (off) or positive");
        Check(AutocastDtype is null or ScalarType.BFloat16, nameof(AutocastDtype), AutocastDtype?.ToString() ?? "null", "null or BFloat16");
        return this;
    }

    /// <summary>The learning rate of step <paramref name="step"/> (0-based): linear from 0 over the warm-up, then cosine down to MinLearningRate.</summary>
    public double LearningRateAt(int step)
    {
        if (step < WarmupSteps) return LearningRate * (step + 1) / WarmupSteps;
        double progress = Steps == WarmupSteps ? 1 : Math.Min(1, (double)(step - WarmupSteps) / (Steps - WarmupSteps));
        return MinLearningRate + 0.5 * (LearningRate - MinLearningRate) * (1 + Math.Cos(Math.PI * progress));
    }
}

/// <summary>What one optimizer step did.</summary>
/// <param name="Step">Steps done, this one included.</param>
/// <param name="Loss">Mean loss over the step's batch.</param>
/// <param name="LearningRate">The learning rate it used.</param>
/// <param name="GradientNorm">The gradients' L2 norm before clipping.</param>
/// <param name="TokensPerSecond">Predicted tokens per second of the step.</param>
public sealed record TrainingProgress(int Step, double Loss, double LearningRate, double GradientNorm, double TokensPerSecond);
