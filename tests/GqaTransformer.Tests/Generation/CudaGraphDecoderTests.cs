using FluentAssertions;
using GqaTransformer;
using Xunit;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

/// <summary>
/// The fixed-shape decode step that CUDA graphs capture (attention over the whole capacity under a device-held mask,
/// K/V written at a device-held slot, positions moved on the device), checked against the eager step here on the CPU,
/// and with real graphs where CUDA is (skipped elsewhere; tools/gpu_check.sh runs the same check through gqa verify).
/// </summary>
public class CudaGraphDecoderTests
{
    [Theory]
    [InlineData("llama_gqa", false)]
    [InlineData("llama_mha", false)]
    [InlineData("llama_mqa", true)]
    public void The_fixed_shape_step_equals_the_eager_step(string name, bool padded)
    {
        using var scope = NewDisposeScope();
        using var model = DecoderModel.FromPretrained(Fixtures.HfTiny(name));
        const int batch = 2, prompt = 5, steps = 6, capacity = 16;
        var ids = Tiny.Ids(batch, prompt, model.Config.VocabSize);
        var mask = padded ? tensor(new long[] { 0, 0, 1, 1, 1, 1, 1, 1, 1, 1 }).view(batch, prompt) : null;
        var positions = padded ? tensor(new long[] { 1, 1, 0, 1, 2, 0, 1, 2, 3, 4 }).view(batch, prompt) : null;
        using var eagerCache = model.CreateCache(batch, capacity);
        using var fixedCache = model.CreateCache(batch, capacity);
        var eagerLogits = model.forward(ids, eagerCache, mask, positions, lastTokenOnly: true);
        model.forward(ids, fixedCache, mask, positions, lastTokenOnly: true);
        long[] next = padded ? [3, prompt] : [prompt, prompt];
        using var decoder = new CudaGraphDecoder(model, fixedCache, useGraph: false);
        decoder.Start(next, mask);
        var growingMask = mask;
        for (int step = 0; step < steps; step++)
        {
            var tokens = eagerLogits.argmax(-1).view(batch).data<long>().ToArray();
            var stepPositions = tensor(next.Select(p => p + step).ToArray()).view(batch, 1);
            growingMask = growingMask is null ? null : cat([growingMask, ones(batch, 1, ScalarType.Int64)], 1);
            eagerLogits = model.forward(tensor(tokens).view(batch, 1), eagerCache, growingMask, padded ? stepPositions : null);
            var fixedLogits = decoder.Step(tokens);
            Tiny.MaxAbsDiff(fixedLogits, eagerLogits.squeeze(1)).Should().BeLessThan(1e-5, $"step {step}");
            fixedCache.Length.Should().Be(eagerCache.Length);
        }
    }

    [Fact]
    public void One_decoder_serves_sessions_one_after_another_as_fresh_ones_would()
    {
        // A TokenGenerator keeps one decoder per batch and capacity bucket: its static tensors must be fully rewritten
        // by each session (a padded prompt after an unpadded one, a shorter one after a longer one).
        using var scope = NewDisposeScope();
        using var model = DecoderModel.FromPretrained(Fixtures.HfTiny("llama_gqa"));
        using var keptCache = model.CreateCache(2, 24);
        using var kept = new CudaGraphDecoder(model, keptCache, useGraph: false);
        IReadOnlyList<IReadOnlyList<int>>[] turns = [[[5, 9, 13, 2, 8], [7, 1, 4, 4, 3]], [[3, 3], [11, 6, 2, 9]], [[1], [2]]];
        foreach (var prompts in turns)
        {
            using var reused = new GenerationSession(model, 2, 24, kept);
            using var fresh = new GenerationSession(model, 2, 24);
            var a = reused.Prefill(prompts);
            var b = fresh.Prefill(prompts);
            for (int step = 0; step < 6; step++)
            {
                Tiny.MaxAbsDiff(a, b).Should().BeLessThan(1e-5, $"step {step}");
                var tokens = b.argmax(-1).data<long>().ToArray();
                a = reused.DecodeStep(tokens);
                b = fresh.DecodeStep(tokens);
            }
        }
    }

    [SkippableFact]
    public void Without_cuda_graphs_are_unavailable_with_a_reason_and_generation_is_eager()
    {
        Skip.If(cuda.is_available(), "this machine has CUDA");
        CudaGraphs.IsAvailable.Should().BeFalse();
        CudaGraphs.UnavailableReason.Should().Contain("CUDA");
        using var model = DecoderModel.FromPretrained(Fixtures.HfTiny("llama_gqa"));
        using var session = new GenerationSession(model, 1, 8, useCudaGraphs: true);
        session.UsesCudaGraphs.Should().BeFalse();
    }

    [Theory]
    [InlineData("2.11.0", "2.11.0+cu130", true)]
    [InlineData("2.11.0", "2.10.0", false)]
    [InlineData("2.11.0", "2.11.1", false)]
    public void The_shim_is_used_only_with_the_libtorch_release_it_was_built_for(string built, string running, bool same)
        => CudaGraphLibrary.SameRelease(built, running).Should().Be(same);

    [SkippableTheory]
    [InlineData("hf-tiny", "llama_gqa")]
    [InlineData("hf-ref", "llama_padded")]
    public void On_cuda_greedy_tokens_are_the_same_with_and_without_graphs(string set, string name)
    {
        Skip.IfNot(cuda.is_available(), "needs CUDA");
        Skip.IfNot(CudaGraphs.IsAvailable, CudaGraphs.UnavailableReason ?? "");
        using var model = DecoderModel.FromPretrained(Path.Combine(Fixtures.Root, set, name), ScalarType.Float32, CUDA);
        using var generator = new TokenGenerator(model);
        IReadOnlyList<IReadOnlyList<int>> prompts = [[5, 9, 13, 2], [7, 1]];
        var options = new GenerationOptions { MaxNewTokens = 12, StopTokenIds = [] };
        var eager = generator.Generate(prompts, options with { UseCudaGraphs = false });
        generator.Generate(prompts, options).Should().BeEquivalentTo(eager, o => o.WithStrictOrdering());
        // the second call replays the graph captured by the first, over the same kept cache
        generator.Generate(prompts, options).Should().BeEquivalentTo(eager, o => o.WithStrictOrdering());
    }
}
