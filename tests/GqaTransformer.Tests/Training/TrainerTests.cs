using FluentAssertions;
using GqaTransformer;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

/// <summary>Tests that seed libtorch's global generator and compare runs; they run alone, so no other test draws from it meanwhile.</summary>
[CollectionDefinition(nameof(SeededTests), DisableParallelization = true)]
public sealed class SeededTests;

[Collection(nameof(SeededTests))]
public class TrainerTests
{
    private static readonly DecoderConfig Small = Tiny.Config(heads: 4, kvHeads: 2, hidden: 32, layers: 2, vocab: 64, intermediate: 48);

    private static List<long[]> Data(int sequences, int length, int seed = 3)
    {
        // A learnable stream: a repeating pattern with some noise.
        var random = new Random(seed);
        return Enumerable.Range(0, sequences)
            .Select(_ => Enumerable.Range(0, length).Select(j => (long)(random.Next(4) == 0 ? random.Next(64) : (j * 5) % 64)).ToArray())
            .ToList();
    }

    private static TrainingOptions Options(int steps = 8) => new()
    {
        Steps = steps, BatchSize = 4, LearningRate = 3e-3, MinLearningRate = 3e-4, WarmupSteps = 2, WeightDecay = 0.1, ClipNorm = 1.0,
    };

    private static List<double> Losses(Trainer trainer, IEnumerable<long[]> data)
    {
        var losses = new List<double>();
        trainer.Train(data, new SynchronousProgress(p => losses.Add(p.Loss)));
        return losses;
    }

    private sealed class SynchronousProgress(Action<TrainingProgress> report) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => report(value);
    }

    [Fact]
    public void Bf16_autocast_is_refused_off_cuda_with_the_reason()
    {
        using var model = new DecoderModel(Small);
        var act = () => new Trainer(model, Options() with { AutocastDtype = ScalarType.BFloat16 });
        act.Should().Throw<ArgumentException>().WithMessage("*AutocastDtype BFloat16 needs a model on CUDA*");
        var fp16 = () => Options() with { AutocastDtype = ScalarType.Float16 };
        fp16().Invoking(o => o.Validate()).Should().Throw<ArgumentOutOfRangeException>().WithMessage("*AutocastDtype must be null or BFloat16*");
    }

    [SkippableFact]
    public void On_cuda_bf16_autocast_follows_the_float32_loss_curve_and_keeps_float32_weights()
    {
        Skip.IfNot(cuda.is_available(), "needs CUDA");
        Skip.If(CudaOps.AutocastUnavailableReason is not null, CudaOps.AutocastUnavailableReason ?? "");
        var data = Data(64, 33);
        List<double> Run(ScalarType? autocast)
        {
            manual_seed(11);
            using var model = new DecoderModel(Small, device: CUDA);
            using var trainer = new Trainer(model, Options(16) with { AutocastDtype = autocast });
            var losses = Losses(trainer, data);
            model.parameters().Should().OnlyContain(p => p.dtype == ScalarType.Float32);
            return losses;
        }
        var full = Run(null);
        var bf16 = Run(ScalarType.BFloat16);
        bf16.Last().Should().BeLessThan(bf16.First(), "it learns");
        for (int i = 0; i < full.Count; i++)
            Math.Abs(bf16[i] - full[i]).Should().BeLessThan(0.05 * full[i], $"step {i + 1}");
    }

    [Fact]
    public void Autograd_through_the_model_matches_finite_differences_for_every_parameter()
    {
        using var scope = NewDisposeScope();
        manual_seed(5);
        using var model = new DecoderModel(Small with { NumHiddenLayers = 1 }, ScalarType.Float64);
        var ids = Tiny.Ids(2, 6, Small.VocabSize);
        // The loss in float64 here (CausalLmLoss, tested on its own, computes in float32 as transformers does).
        Tensor Loss64() => nn.functional.cross_entropy(
            model.forward(ids).narrow(1, 0, 5).reshape(-1, Small.VocabSize), ids.narrow(1, 1, 5).reshape(-1));
        double Loss() { using var s = NewDisposeScope(); return Loss64().item<double>(); }
        Loss64().backward();
        var random = new Random(9);
        int checkedTensors = 0;
        foreach (var (name, parameter) in model.named_parameters())
        {
            var gradient = parameter.grad!.to(ScalarType.Float64).reshape(-1).data<double>().ToArray();
            using var flat = parameter.detach().view(-1);
            for (int k = 0; k < 2; k++)
            {
                long i = random.NextInt64(flat.numel());
                double original = flat[i].item<double>();
                const double h = 1e-2;
                using (no_grad())
                {
                    flat[i] = original + h; double up = Loss();
                    flat[i] = original - h; double down = Loss();
                    flat[i] = original;
                    double numeric = (up - down) / (2 * h);
                    // RMSNorm runs in float32 inside (as transformers' does): the quotient is good to about 1e-5 here.
                    Math.Abs(numeric - gradient[i]).Should().BeLessThan(1e-4 + 1e-2 * Math.Abs(numeric), $"{name}[{i}]");
                }
            }
            checkedTensors++;
        }
        checkedTensors.Should().Be(model.parameters().Count());
    }

    [Fact]
    public void The_schedule_warms_up_linearly_then_decays_by_cosine_to_the_minimum()
    {
        var o = new TrainingOptions { Steps = 100, WarmupSteps = 10, LearningRate = 1e-3, MinLearningRate = 1e-4 };
        o.LearningRateAt(0).Should().BeApproximately(1e-4, 1e-12);
        o.LearningRateAt(9).Should().BeApproximately(1e-3, 1e-12);
        o.LearningRateAt(55).Should().BeApproximately(1e-4 + 0.5 * 9e-4 * (1 + Math.Cos(Math.PI * 45 / 90)), 1e-12);
        o.LearningRateAt(100).Should().BeApproximately(1e-4, 1e-12);
    }

    [Fact]
    public void Training_lowers_the_loss_and_a_seeded_cpu_run_repeats_exactly()
    {
        var data = Data(4 * 30, 24);
        List<double> Run()
        {
            using var model = Tiny.Model(Small, seed: 11);
            using var trainer = new Trainer(model, Options(steps: 30));
            return Losses(trainer, data);
        }
        var first = Run();
        first.Should().HaveCount(30);
        first[^1].Should().BeLessThan(first[0] * 0.7, "the pattern is learnable");
        Run().Should().Equal(first);
    }

    [Fact]
    public void Weight_decay_reaches_matrices_only()
    {
        var batch = Data(4, 16);
        using var plain = Tiny.Model(Small, seed: 2);
        using var decayed = Tiny.Model(Small, seed: 2);
        using (var a = new Trainer(plain, Options() with { WeightDecay = 0 })) a.TrainStep(batch);
        using (var b = new Trainer(decayed, Options() with { WeightDecay = 0.5 })) b.TrainStep(batch);
        var after = decayed.state_dict();
        foreach (var (name, tensor) in plain.state_dict())
            if (tensor.dim() < 2) Tiny.MaxAbsDiff(tensor, after[name]).Should().Be(0, $"{name} is not decayed");
            else Tiny.MaxAbsDiff(tensor, after[name]).Should().BeGreaterThan(0, $"{name} is decayed");
    }

    [Fact]
    public void Accumulated_micro_batches_give_the_whole_batch_step()
    {
        var data = Data(4 * 3, 16);
        using var whole = Tiny.Model(Small, seed: 4);
        using var split = Tiny.Model(Small, seed: 4);
        using var a = new Trainer(whole, Options(steps: 3));
        using var b = new Trainer(split, Options(steps: 3) with { AccumulationSteps = 2 });
        var la = Losses(a, data);
        var lb = Losses(b, data);
        for (int i = 0; i < 3; i++) lb[i].Should().BeApproximately(la[i], 1e-5);
        var after = split.state_dict();
        foreach (var (name, tensor) in whole.state_dict()) Tiny.MaxAbsDiff(tensor, after[name]).Should().BeLessThan(1e-5, name);
    }

    [Fact]
    public void Resuming_from_a_checkpoint_continues_the_loss_curve_exactly()
    {
        using var directory = new Fixtures.TempDirectory();
        var data = Data(4 * 6, 16);
        List<double> straight;
        using (var model = Tiny.Model(Small, seed: 8))
        using (var trainer = new Trainer(model, Options(steps: 6)))
            straight = Losses(trainer, data);

        var resumed = new List<double>();
        using (var model = Tiny.Model(Small, seed: 8))
        using (var trainer = new Trainer(model, Options(steps: 6)))
        {
            foreach (var batch in data.Chunk(4).Take(3)) resumed.Add(trainer.TrainStep(batch).Loss);
            trainer.Save(directory.Path);
        }
        using (var trainer = Trainer.Resume(directory.Path, Options(steps: 6)))
        {
            trainer.Step.Should().Be(3);
            resumed.AddRange(Losses(trainer, data));
        }
        resumed.Should().HaveCount(6);
        for (int i = 0; i < 6; i++) resumed[i].Should().BeApproximately(straight[i], 1e-6, $"step {i + 1}");
    }

    [Fact]
    public void Cancellation_stops_between_steps_and_leaves_the_trainer_usable()
    {
        using var model = Tiny.Model(Small, seed: 1);
        using var trainer = new Trainer(model, Options(steps: 4));
        using var cancel = new CancellationTokenSource();
        var data = Data(16, 16);
        FluentActions.Invoking(() => trainer.Train(data, new SynchronousProgress(_ => cancel.Cancel()), cancel.Token))
            .Should().Throw<OperationCanceledException>();
        trainer.Step.Should().Be(1);
        cancel.Dispose();
        var after = new List<int>();
        trainer.Train(data.Take(12), new SynchronousProgress(p => after.Add(p.Step)), CancellationToken.None);
        after.Should().Equal([2, 3]);
        trainer.Train(data);                 // no progress reporter: the steps still run
        trainer.Step.Should().Be(4);
    }

    [Fact]
    public void Bad_options_and_batches_are_named()
    {
        FluentActions.Invoking(() => new TrainingOptions { BatchSize = 6, AccumulationSteps = 4 }.Validate())
            .Should().Throw<ArgumentOutOfRangeException>().WithParameterName("AccumulationSteps");
        FluentActions.Invoking(() => new TrainingOptions { LearningRate = double.NaN }.Validate())
            .Should().Throw<ArgumentOutOfRangeException>().WithParameterName("LearningRate");
        using var model = Tiny.Model(Small);
        using var trainer = new Trainer(model, Options());
        FluentActions.Invoking(() => trainer.TrainStep(Data(3, 16))).Should().Throw<ArgumentException>().WithParameterName("sequences");
    }
}
