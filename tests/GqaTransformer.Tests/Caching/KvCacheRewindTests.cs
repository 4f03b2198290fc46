using FluentAssertions;
using GqaTransformer;
using Xunit;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

public class KvCacheRewindTests
{
    [Fact]
    public void Rewinding_then_reading_other_tokens_equals_reading_them_into_a_fresh_cache()
    {
        using var scope = NewDisposeScope();
        using var model = DecoderModel.FromPretrained(Fixtures.HfTiny("llama_gqa"));
        using var cache = model.CreateCache(1, 32);
        model.forward(tensor(new long[] { 5, 9, 13, 2, 8, 7 }).view(1, 6), cache);
        cache.RewindTo(3);
        cache.Length.Should().Be(3);
        var rewound = model.forward(tensor(new long[] { 40, 41 }).view(1, 2), cache);
        using var fresh = model.CreateCache(1, 32);
        var expected = model.forward(tensor(new long[] { 5, 9, 13, 40, 41 }).view(1, 5), fresh).narrow(1, 3, 2);
        Tiny.MaxAbsDiff(rewound, expected).Should().BeLessThan(1e-5);
        cache.SlotPositionsOf(0).Should().Equal(0, 1, 2, 3, 4);
    }

    [Fact]
    public void Out_of_range_or_a_wrapped_ring_is_refused_and_nothing_changes()
    {
        using var scope = NewDisposeScope();
        using var model = DecoderModel.FromPretrained(Fixtures.HfRef("mistral_sliding"));   // sliding window 8
        using var ring = model.CreateCache(1, 32);
        ring.IsRingBuffer.Should().BeTrue();
        model.forward(tensor(Enumerable.Range(1, 12).Select(i => (long)i).ToArray()).view(1, 12), ring);
        FluentActions.Invoking(() => ring.RewindTo(13)).Should().Throw<ArgumentOutOfRangeException>().WithMessage("*[0, 12]*");
        FluentActions.Invoking(() => ring.RewindTo(-1)).Should().Throw<ArgumentOutOfRangeException>();
        FluentActions.Invoking(() => ring.RewindTo(5)).Should().Throw<InvalidOperationException>().WithMessage("*wrapped*");
        ring.Length.Should().Be(12);
        ring.RewindTo(0);
        ring.Length.Should().Be(0);
    }
}
