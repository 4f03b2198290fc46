using FluentAssertions;
using GqaTransformer;
using Microsoft.Extensions.AI;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

/// <summary>
/// Long runs must not keep memory: decode steps, load/dispose cycles, a cache reset and reused, chat turns. Each reads
/// what a leak would grow (native heap bytes in use, the managed heap, live tensors: <see cref="ProcessMemory"/>), not
/// the test process's resident memory, which other tests' threads move by tens of MB (ADR 0019); the one resident-memory
/// check runs gqa soak in a process of its own. Short by default; GQA_LONG_RUN=1 runs the full counts of
/// docs/reliability.md (10,000 steps, 200 cycles, 1,000 resets, 1,000 chat turns), as .ci/run does.
/// </summary>
[Collection(nameof(ThreadHostileTests))]
public class LongRunTests
{
    private static readonly bool Long = Environment.GetEnvironmentVariable("GQA_LONG_RUN") == "1";

    /// <summary>
    /// Runs <paramref name="body"/> on a thread of its own: TorchSharp counts live tensors per thread, and a test runner's
    /// thread also carries other tests' work.
    /// </summary>
    private static void OnOwnThread(Action body)
    {
        Exception? failure = null;
        var thread = new Thread(() => { try { body(); } catch (Exception e) { failure = e; } }, 16 << 20);
        thread.Start();
        thread.Join();
        if (failure is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(failure).Throw();
    }

    /// <summary>
    /// Native heap growth allowed from half-way to the end. Bytes in use move without a trend: over 400 load/dispose
    /// cycles of the tiny model they climbed about 11 KB a cycle and fell back by about 5 MB twice (the allocator's
    /// per-thread caches count as in use, the JIT recompiles hot methods); the short runs moved 0.7-5.5 MB. A leaked
    /// tiny model is 1.6 MB a cycle, and tensor leaks are counted exactly instead.
    /// </summary>
    private const long NativeSlack = 8 << 20;

    /// <summary>Managed heap growth allowed after warm-up: the runtime's own caches (type loading, the JIT's tiers).</summary>
    private const long ManagedSlack = 2 << 20;

    private static void ShouldHoldMemory(ProcessMemory warm, ProcessMemory end, string after)
    {
        (end.NativeInUse - warm.NativeInUse).Should().BeLessThan(NativeSlack, $"native heap bytes in use after {after} (from {warm} to {end})");
        (end.ManagedHeap - warm.ManagedHeap).Should().BeLessThan(ManagedSlack, $"managed heap bytes after {after} (from {warm} to {end})");
    }

    [Fact]
    public void Decode_steps_with_a_reused_cache_keep_tensors_and_memory_flat() => OnOwnThread(() =>
    {
        int steps = Long ? 10_000 : 1_500, perSession = 250;
        using var model = DecoderModel.FromPretrained(Fixtures.HfTiny("llama_gqa"));
        using var cache = model.CreateCache(1, perSession + 8);
        ProcessMemory? warm = null;
        int done = 0, resets = 0;
        while (done < steps)
        {
            cache.Reset();
            resets++;
            using var session = new GenerationSession(model, 1, perSession + 8, cache);
            using (NewDisposeScope())
            {
                long next = session.Prefill([[5, 9, 13, 2]]).argmax(-1).item<long>();
                for (int i = 0; i < perSession && done < steps; i++, done++)
                {
                    using var scope = NewDisposeScope();
                    next = session.DecodeStep([next]).argmax(-1).item<long>();
                }
            }
            if (done >= steps / 2) warm ??= ProcessMemory.Read();
        }
        var end = ProcessMemory.Read();
        ShouldHoldMemory(warm!.Value, end, $"{steps} steps");
        end.LiveTensors.Should().Be(warm.Value.LiveTensors, $"after {steps} steps and {resets} cache resets");
    });

    [Fact]
    public void Load_and_dispose_cycles_give_their_memory_back() => OnOwnThread(() =>
    {
        int cycles = Long ? 200 : 30;
        int parameters;
        using (var probe = DecoderModel.FromPretrained(Fixtures.HfTiny("llama_gqa"))) parameters = probe.parameters().Count();
        ProcessMemory warm = default;
        for (int cycle = 0; cycle < cycles; cycle++)
        {
            using (var model = DecoderModel.FromPretrained(Fixtures.HfTiny("llama_gqa")))
            using (NewDisposeScope())
                model.forward(tensor(new long[] { 5, 9, 13 }).view(1, 3));
            if (cycle == cycles / 2) warm = ProcessMemory.Read();
        }
        var end = ProcessMemory.Read();
        ShouldHoldMemory(warm, end, $"{cycles} load/dispose cycles");
        // TorchSharp's Parameter(tensor) moves the handle out without taking the emptied wrapper off the count, so each
        // load adds one count per parameter that owns nothing (docs/reliability.md); anything beyond is a leak of ours.
        (end.LiveTensors - warm.LiveTensors).Should().BeLessThanOrEqualTo((long)(cycles - cycles / 2 - 1) * parameters,
            $"after {cycles} load/dispose cycles: at most one wrapper per parameter per cycle");
    });

    [SkippableFact]
    public void Loading_and_disposing_a_large_model_gives_its_pages_back()
    {
        // About 200 MiB of weights. glibc raises its mmap threshold to the largest block freed, so freed weights stayed
        // in the heap, resident, and the process grew by about the model's size every cycle or two until the model's
        // disposal trimmed the heap (ADR 0019). Resident memory is the process's, so it is read in a process of our own,
        // gqa soak's, where this test's runner has left no arenas behind: after its first cycle it must stay within a
        // quarter of the model. Here, in-process, every native block of the model must be freed at each disposal.
        Skip.IfNot(ProcessMemory.Available, "this C library has no mallinfo2");
        using var dir = new Fixtures.TempDirectory();
        long weightBytes = 0;
        OnOwnThread(() =>
        {
            using (var model = new DecoderModel(Tiny.Config(heads: 8, kvHeads: 2, hidden: 512, layers: 8, vocab: 32000, intermediate: 1408)))
            {
                model.SavePretrained(dir.Path);
                weightBytes = model.parameters().Sum(p => p.numel()) * 4;
            }
            ProcessMemory afterFirst = default;
            for (int cycle = 0; cycle < (Long ? 20 : 4); cycle++)
            {
                using (var model = DecoderModel.FromPretrained(dir.Path))
                using (NewDisposeScope())
                    model.forward(tensor(new long[] { 5, 9, 13 }).view(1, 3));
                if (cycle == 0) afterFirst = ProcessMemory.Read();
            }
            var end = ProcessMemory.Read();
            (end.NativeInUse - afterFirst.NativeInUse).Should().BeLessThan(NativeSlack, $"native heap bytes in use after loading and disposing a {weightBytes >> 20} MiB model (from {afterFirst} to {end})");
        });

        var soak = Soak.Run(dir.Path, cycles: Long ? 20 : 6);
        soak["rss_growth_after_cycle_1"].Should().BeLessThan(weightBytes / 4,
            $"a process's resident memory after loading and disposing a {weightBytes >> 20} MiB model (gqa soak: {string.Join(", ", soak.Select(p => $"{p.Key}={p.Value}"))})");
    }

    [Fact]
    public async Task Chat_turns_keep_memory_flat()
    {
        int turns = Long ? 1_000 : 120;
        using var fixture = new ChatFixture();
        using var client = GqaChatClient.FromPretrained(fixture.Path);
        var options = new ChatOptions { MaxOutputTokens = 4 };
        var chat = new List<ChatMessage>();
        ProcessMemory warm = default;
        for (int turn = 0; turn < turns; turn++)
        {
            if (turn % 6 == 0) chat.Clear();                    // a new conversation now and then: rewinds the cache
            chat.Add(new ChatMessage(ChatRole.User, $"turn {turn}"));
            var reply = await client.GetResponseAsync(chat, options);
            chat.Add(new ChatMessage(ChatRole.Assistant, reply.Text));
            if (turn == turns / 2) warm = ProcessMemory.Read();
        }
        ShouldHoldMemory(warm, ProcessMemory.Read(), $"{turns} chat turns");
    }
}
