using FluentAssertions;
using GqaTransformer;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

/// <summary>For a sliding-window model the cache keeps only the window, as a ring buffer.</summary>
public class RingBufferTests
{
    [Fact]
    public void Memory_stops_growing_at_the_window()
    {
        var config = Tiny.Config(slidingWindow: 16);
        using var small = new KvCache(config, 1, 8);
        using var window = new KvCache(config, 1, 16);
        using var huge = new KvCache(config, 1, 100_000);
        small.IsRingBuffer.Should().BeFalse();
        huge.IsRingBuffer.Should().BeTrue();
        huge.SlotsOf(0).Should().Be(16);
        huge.SizeInBytes.Should().Be(window.SizeInBytes).And.Be(huge.Tensors.Sum(t => t.numel() * t.ElementSize));
        KvCache.EstimateBytes(config, 1, 100_000, ScalarType.Float32).Should().Be(window.SizeInBytes);
        small.SizeInBytes.Should().Be(window.SizeInBytes / 2);
    }

    [Theory]
    [InlineData(2, 1)]  // GQA
    [InlineData(8, 8)]  // MHA
    public void Chunks_longer_than_the_window_then_decode_equal_a_full_forward(int heads, int kvHeads)
    {
        using var scope = NewDisposeScope();
        var config = Tiny.Config(heads: 8, kvHeads: kvHeads, slidingWindow: 6) with { NumAttentionHeads = 8 };
        using var model = Tiny.Model(config);
        var ids = Tiny.Ids(2, 30, config.VocabSize);
        var full = model.forward(ids); // window applied by the mask over the whole sequence

        using var cache = model.CreateCache(2, 30);
        cache.SlotsOf(0).Should().Be(6);
        var pieces = new List<Tensor>
        {
            model.forward(ids.narrow(1, 0, 9), cache),   // longer than the window
            model.forward(ids.narrow(1, 9, 4), cache),   // wraps around the ring
        };
        for (int t = 13; t < 27; t++) pieces.Add(model.forward(ids.narrow(1, t, 1), cache));
        pieces.Add(model.forward(ids.narrow(1, 27, 3), cache));
        cache.SlotPositionsOf(0).Should().BeEquivalentTo(new long[] { 24, 25, 26, 27, 28, 29 });
        Tiny.MaxAbsDiff(cat(pieces, 1), full).Should().BeLessThan(1e-4);
        _ = heads;
    }
}
