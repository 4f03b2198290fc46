using FluentAssertions;
using GqaTransformer;
using Xunit;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

/// <summary>One model shared by several threads, each with its own cache (docs/reliability.md, thread safety).</summary>
[Collection(nameof(ThreadHostileTests))]
public class ConcurrencyTests
{
    [Theory]
    [InlineData("llama_gqa")]
    [InlineData("llama_mqa")]
    public void Threads_with_their_own_caches_get_the_tokens_of_sequential_runs(string name)
    {
        using var model = DecoderModel.FromPretrained(Fixtures.HfTiny(name));
        int[][] prompts = [[5, 9, 13], [7, 1, 4, 4], [2], [11, 6, 2, 9, 3], [8, 8]];
        var options = new GenerationOptions { MaxNewTokens = 24, StopTokenIds = [] };
        IReadOnlyList<int> Run(int[] prompt)
        {
            using var generator = new TokenGenerator(model);
            using var cache = model.CreateCache(1, 64);
            return generator.Generate([prompt], options, cache)[0];
        }
        var sequential = prompts.Select(Run).ToArray();
        for (int round = 0; round < 3; round++)
        {
            var parallel = new IReadOnlyList<int>[prompts.Length];
            var threads = prompts.Select((p, i) => new Thread(() => parallel[i] = Run(p))).ToList();
            threads.ForEach(t => t.Start());
            threads.ForEach(t => t.Join());
            for (int i = 0; i < prompts.Length; i++)
                parallel[i].Should().Equal(sequential[i], $"prompt {i}, round {round}");
        }
    }

    [Fact]
    public void A_cancelled_generation_leaves_model_and_cache_usable()
    {
        using var model = DecoderModel.FromPretrained(Fixtures.HfTiny("llama_gqa"));
        using var generator = new TokenGenerator(model);
        using var cache = model.CreateCache(1, 64);
        var options = new GenerationOptions { MaxNewTokens = 30, StopTokenIds = [] };
        using var cancel = new CancellationTokenSource();
        var act = () =>
        {
            int n = 0;
            foreach (var _ in generator.StreamBatch([[5, 9, 13]], options, cache, cancel.Token))
                if (++n == 5) cancel.Cancel();
        };
        act.Should().Throw<OperationCanceledException>();
        cache.Reset();
        var again = generator.Generate([[5, 9, 13]], options, cache)[0];
        using var fresh = model.CreateCache(1, 64);
        again.Should().Equal(generator.Generate([[5, 9, 13]], options, fresh)[0]);
    }
}
