using System.Diagnostics;
using System.Text.Json;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>
/// Trains a <see cref="DecoderModel"/> on packed token sequences with the causal-LM loss (<see cref="CausalLmLoss"/>):
/// AdamW with weight decay on matrices only, warm-up then cosine learning rate, gradient clipping and accumulation
/// (<see cref="TrainingOptions"/>). <see cref="Save"/> writes an HF checkpoint with the optimizer's state and the step;
/// <see cref="Resume"/> continues from it where the loss curve left off. A trainer owns the model only if
/// <see cref="Resume"/> loaded it.
/// </summary>
public sealed class Trainer : IDisposable
{
    private const string StateFile = "trainer_state.json";
    private const string OptimizerFile = "optimizer.bin";

    private readonly DecoderModel _model;
    private readonly TrainingOptions _options;
    private readonly Parameter[] _parameters;
    private readonly OptimizerHelper _optimizer;
    private bool _ownsModel;

    /// <summary>Starts training <paramref name="model"/> from step 0.</summary>
    public Trainer(DecoderModel model, TrainingOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        _options = options.Validate();
        if (options.AutocastDtype is { } autocast)
        {
            if (model.Device.type != DeviceType.CUDA)
                throw new ArgumentException($"AutocastDtype {autocast} needs a model on CUDA, but the model is on {model.Device}.", nameof(options));
            if (CudaOps.AutocastUnavailableReason is { } reason)
                throw new ArgumentException($"AutocastDtype {autocast} is unavailable: {reason}.", nameof(options));
        }
        _model = model;
        _parameters = model.parameters().ToArray();
        // Decay matrices (embeddings, projections); never norms or biases.
        var decayed = new AdamW.ParamGroup(_parameters.Where(p => p.dim() >= 2), new AdamW.Options { weight_decay = options.WeightDecay });
        var plain = new AdamW.ParamGroup(_parameters.Where(p => p.dim() < 2), new AdamW.Options { weight_decay = 0 });
        _optimizer = optim.AdamW([decayed, plain], options.LearningRate, options.Beta1, options.Beta2, 1e-8, options.WeightDecay);
    }

    /// <summary>Optimizer steps done.</summary>
    public int Step { get; private set; }

    /// <summary>The model being trained.</summary>
    public DecoderModel Model => _model;

    /// <summary>
    /// One optimizer step over <paramref name="sequences"/> (BatchSize sequences of one length, token ids), split into
    /// AccumulationSteps forwards whose gradients add up to the batch's mean loss.
    /// </summary>
    public TrainingProgress TrainStep(IReadOnlyList<long[]> sequences)
    {
        ArgumentNullException.ThrowIfNull(sequences);
        if (sequences.Count != _options.BatchSize)
            throw new ArgumentException($"A step takes BatchSize = {_options.BatchSize} sequences, but got {sequences.Count}.", nameof(sequences));
        int length = sequences[0].Length;
        if (length < 2 || sequences.Any(s => s.Length != length))
            throw new ArgumentException("The sequences must share one length of at least 2.", nameof(sequences));
        if (Step >= _options.Steps)
            throw new InvalidOperationException($"Training is complete: {Step} of {_options.Steps} steps are done.");

        var clock = Stopwatch.StartNew();
        var device = _model.Device;
        double learningRate = _options.LearningRateAt(Step);
        long predicted = (long)sequences.Count * (length - 1);
        double lossSum = 0;
        _model.train();
        _optimizer.zero_grad();
        foreach (var micro in sequences.Chunk(sequences.Count / _options.AccumulationSteps))
        {
            using var scope = NewDisposeScope();
            var ids = tensor(micro.SelectMany(s => s).ToArray(), device: device).view(micro.Length, length);
            Tensor sum;
            using (_options.AutocastDtype is { } dtype ? CudaOps.Autocast(dtype) : null)
                (sum, _) = CausalLmLoss.Sum(_model.forward(ids), ids);
            (sum / predicted).backward();                 // each micro-batch adds its share of the batch's mean; outside autocast, as PyTorch's recipe
            lossSum += sum.item<float>();
        }
        double norm = _options.ClipNorm > 0
            ? nn.utils.clip_grad_norm_(_parameters, _options.ClipNorm)
            : GradientNorm();
        foreach (var group in _optimizer.ParamGroups) group.LearningRate = learningRate;
        _optimizer.step();
        Step++;
        return new TrainingProgress(Step, lossSum / predicted, learningRate, norm, predicted / clock.Elapsed.TotalSeconds);
    }

    /// <summary>
    /// Trains until <see cref="TrainingOptions.Steps"/> are done, taking BatchSize sequences a step from
    /// <paramref name="sequences"/> after skipping those that earlier steps consumed (so a resumed run sees the data it
    /// would have seen). Reports each step to <paramref name="progress"/>; stops between steps when cancelled.
    /// </summary>
    public void Train(IEnumerable<long[]> sequences, IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(sequences);
        foreach (var batch in sequences.Skip(Step * _options.BatchSize).Chunk(_options.BatchSize))
        {
            if (Step >= _options.Steps || batch.Length < _options.BatchSize) break;
            cancellationToken.ThrowIfCancellationRequested();
            var step = TrainStep(batch);      // not inside ?. : with no progress the step must still run
            progress?.Report(step);
        }
    }

    /// <summary>Writes the model (HF checkpoint), the optimizer's state and the step to <paramref name="directory"/>.</summary>
    public void Save(string directory)
    {
        _model.SavePretrained(directory);
        _optimizer.save_state_dict(Path.Combine(directory, OptimizerFile));
        File.WriteAllText(Path.Combine(directory, StateFile), JsonSerializer.Serialize(new { step = Step }));
    }

    /// <summary>
    /// Loads a directory written by <see cref="Save"/> and continues from its step with its optimizer state: with the same
    /// options and data, the losses that follow are those the uninterrupted run would have had.
    /// </summary>
    public static Trainer Resume(string directory, TrainingOptions options, Device? device = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        string state = Path.Combine(directory, StateFile);
        if (!File.Exists(state)) throw new FileNotFoundException($"'{directory}' holds no {StateFile}; it was not written by Trainer.Save.", state);
        int step;
        try
        {
            step = JsonDocument.Parse(File.ReadAllText(state)).RootElement.GetProperty("step").GetInt32();
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"'{state}' is not a trainer state: {e.Message}", e);
        }
        var model = DecoderModel.FromPretrained(directory, ScalarType.Float32, device);
        try
        {
            var trainer = new Trainer(model, options);
            if (step < 0 || step > options.Steps)
                throw new InvalidDataException($"'{state}' says step {step}, outside [0, {options.Steps}].");
            trainer._optimizer.load_state_dict(Path.Combine(directory, OptimizerFile));
            trainer.Step = step;
            trainer._ownsModel = true;
            return trainer;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    private double GradientNorm()
    {
        using var scope = NewDisposeScope();
        double sum = 0;
        foreach (var p in _parameters)
            if (p.grad is { } g) sum += g.to(ScalarType.Float64).pow(2).sum().item<double>();
        return Math.Sqrt(sum);
    }

    /// <summary>Frees the optimizer's state, and the model if <see cref="Resume"/> loaded it.</summary>
    public void Dispose()
    {
        _optimizer.Dispose();
        if (_ownsModel) _model.Dispose();
    }
}
