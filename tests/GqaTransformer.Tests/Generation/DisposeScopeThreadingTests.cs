using FluentAssertions;
using GqaTransformer;
using Xunit;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

/// <summary>Tests that deliberately misuse dispose scopes on pool threads; they run alone so no other test meets them.</summary>
[CollectionDefinition(nameof(ThreadHostileTests), DisableParallelization = true)]
public sealed class ThreadHostileTests;

/// <summary>
/// A TorchSharp dispose scope belongs to the thread that opened it. Async code that holds one across an await leaves it
/// current on the first thread and disposes it later from another; tensors made on the first thread in between land in
/// that scope and are disposed under whoever made them. This is what disposed tensors inside a decode step in 1-2 of 15
/// test runs: two async tests held a scope across <c>await</c> while other tests ran on the pool. Generation must keep
/// each step's tensors in a scope of its own, whatever thread runs the step and whatever that thread carries.
/// </summary>
[Collection(nameof(ThreadHostileTests))]
public class DisposeScopeThreadingTests
{
    private static readonly GenerationOptions Options = new() { MaxNewTokens = 12, StopTokenIds = [] };

    [Fact]
    public void Each_generation_step_survives_a_foreign_scope_disposed_from_another_thread()
    {
        using var model = DecoderModel.FromPretrained(Fixtures.HfTiny("llama_gqa"));
        var generator = new TokenGenerator(model);
        int[] prompt = [3, 1, 4, 1, 5, 9, 2, 6];
        var expected = generator.Generate(prompt, Options);
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                var random = new Random(5);
                for (int round = 0; round < 40; round++)
                {
                    var tokens = new List<int>();
                    using var steps = generator.Stream(prompt, Options).GetEnumerator();
                    while (true)
                    {
                        // What an awaiting neighbour leaves behind: a scope current on this thread, disposed from another
                        // thread at a moment nobody here chooses, here while the next step runs.
                        var foreign = NewDisposeScope();
                        long delay = random.Next(0, 400) * System.Diagnostics.Stopwatch.Frequency / 1_000_000;
                        var disposer = Task.Run(() =>
                        {
                            long until = System.Diagnostics.Stopwatch.GetTimestamp() + delay;
                            while (System.Diagnostics.Stopwatch.GetTimestamp() < until) Thread.SpinWait(20);
                            foreign.Dispose();
                        });
                        bool more = steps.MoveNext();
                        disposer.Wait();
                        if (!more) break;
                        tokens.Add(steps.Current);
                    }
                    tokens.Should().Equal(expected, $"round {round}");
                }
            }
            catch (Exception e)
            {
                failure = e;
            }
        });
        thread.Start();
        thread.Join();
        failure.Should().BeNull();
    }

    [Fact]
    public async Task Async_streaming_keeps_its_tensors_away_from_scopes_left_on_pool_threads()
    {
        using var model = DecoderModel.FromPretrained(Fixtures.HfTiny("llama_gqa"));
        var generator = new TokenGenerator(model);
        int[] prompt = [3, 1, 4, 1, 5, 9, 2, 6];
        var expected = generator.Generate(prompt, Options);

        using var stop = new CancellationTokenSource();
        var neighbours = Enumerable.Range(0, 4).Select(_ => Task.Run(() => CarelessNeighbour(stop.Token))).ToArray();
        try
        {
            for (int round = 0; round < 20; round++)
            {
                var streamed = new List<int>();
                await foreach (var token in generator.StreamAsync(prompt, Options)) streamed.Add(token);
                streamed.Should().Equal(expected, $"round {round}");
            }
        }
        finally
        {
            stop.Cancel();
            await Task.WhenAll(neighbours);
        }
    }

    /// <summary>The misuse itself: a scope opened on one pool thread, carried across an await, disposed on another.</summary>
    private static async Task CarelessNeighbour(CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            using var scope = NewDisposeScope();
            _ = ones(8);
            await Task.Yield();      // resumes on some pool thread; the scope stays current on the first one
            await Task.Delay(1, CancellationToken.None);
        }                            // disposed here, from whichever thread this is, with whatever joined it meanwhile
    }
}
