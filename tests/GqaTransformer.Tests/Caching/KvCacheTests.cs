using FluentAssertions;
using GqaTransformer;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

public class KvCacheTests
{
    [Theory]
    [InlineData(8, 8, ScalarType.Float32)]
    [InlineData(8, 2, ScalarType.Float32)]
    [InlineData(8, 1, ScalarType.BFloat16)]
    [InlineData(6, 3, ScalarType.Float16)]
    public void SizeInBytes_is_the_sum_of_its_tensors_and_the_formula(int heads, int kvHeads, ScalarType dtype)
    {
        var config = Tiny.Config(heads, kvHeads, hidden: 48, layers: 3);
        using var cache = new KvCache(config, batchSize: 2, capacity: 40, dtype);
        long fromTensors = cache.Tensors.Sum(t => t.numel() * t.ElementSize);
        long formula = 2L * 3 * 2 * kvHeads * 40 * (48 / heads) * (dtype == ScalarType.Float32 ? 4 : 2);
        cache.SizeInBytes.Should().Be(fromTensors).And.Be(formula);
        KvCache.EstimateBytes(config, 2, 40, dtype).Should().Be(formula);
        cache.Tensors.Should().AllSatisfy(t => t.shape.Should().Equal(2, kvHeads, 40, 48 / heads));
    }

    [Theory]
    [InlineData(32, 8)]
    [InlineData(32, 4)]
    [InlineData(32, 1)]
    [InlineData(64, 8)]
    public void Mha_to_gqa_memory_ratio_is_exactly_heads_over_kv_heads(int heads, int kvHeads)
    {
        var gqa = new DecoderConfig
        {
            HiddenSize = heads * 128, NumAttentionHeads = heads, NumKeyValueHeads = kvHeads, IntermediateSize = 11008,
            NumHiddenLayers = 32, VocabSize = 32000,
        };
        var mha = gqa with { NumKeyValueHeads = heads };
        long gqaBytes = KvCache.EstimateBytes(gqa, 1, 4096, ScalarType.BFloat16);
        long mhaBytes = KvCache.EstimateBytes(mha, 1, 4096, ScalarType.BFloat16);
        (mhaBytes % gqaBytes).Should().Be(0);
        (mhaBytes / gqaBytes).Should().Be(heads / kvHeads);

        // And for real allocations of a small model.
        var small = Tiny.Config(heads: 8, kvHeads: Math.Max(1, 8 * kvHeads / heads));
        using var smallGqa = new KvCache(small, 1, 64);
        using var smallMha = new KvCache(small with { NumKeyValueHeads = 8 }, 1, 64);
        ((double)smallMha.SizeInBytes / smallGqa.SizeInBytes).Should().Be(8.0 / small.NumKeyValueHeads);
    }

    [Fact]
    public void Cache_size_does_not_depend_on_the_number_of_query_heads()
    {
        var few = Tiny.Config(heads: 4, kvHeads: 2, hidden: 32);
        var many = Tiny.Config(heads: 16, kvHeads: 2, hidden: 128, headDim: 8);
        KvCache.EstimateBytes(few, 1, 100, ScalarType.Float32).Should().Be(KvCache.EstimateBytes(many, 1, 100, ScalarType.Float32));
    }

    [Fact]
    public void Writing_past_capacity_throws_and_leaves_the_cache_unchanged()
    {
        using var scope = NewDisposeScope();
        var config = Tiny.Config();
        using var model = Tiny.Model(config);
        using var cache = model.CreateCache(batchSize: 2, capacity: 8);
        model.forward(Tiny.Ids(2, 6, config.VocabSize), cache);
        var before = cache.Tensors.Select(t => t.clone()).ToList();

        var act = () => model.forward(Tiny.Ids(2, 3, config.VocabSize, seed: 3), cache);
        act.Should().Throw<InvalidOperationException>().WithMessage("*holds 6 of 8 tokens; 3 more do not fit*");

        cache.Length.Should().Be(6);
        cache.Tensors.Zip(before).Should().AllSatisfy(p => p.First.eq(p.Second).all().item<bool>().Should().BeTrue());
        // Two more still fit.
        model.forward(Tiny.Ids(2, 2, config.VocabSize), cache);
        cache.Length.Should().Be(8);
    }

    [Fact]
    public void Reset_forgets_tokens_and_Advance_commits_them()
    {
        using var cache = new KvCache(Tiny.Config(), 1, 10);
        cache.Advance(4);
        cache.Length.Should().Be(4);
        cache.Layer(0).Keys.shape.Should().Equal(1, 2, 4, 8);
        cache.Reset();
        cache.Length.Should().Be(0);
        cache.Invoking(c => c.Advance(11)).Should().Throw<InvalidOperationException>();
        cache.Invoking(c => c.Advance(-1)).Should().Throw<ArgumentOutOfRangeException>();
    }

    [Fact]
    public void Bad_arguments_are_named()
    {
        var config = Tiny.Config();
        FluentActions.Invoking(() => new KvCache(config, 0, 10)).Should().Throw<ArgumentOutOfRangeException>().WithParameterName("batchSize");
        FluentActions.Invoking(() => new KvCache(config, 1, -5)).Should().Throw<ArgumentOutOfRangeException>().WithParameterName("capacity");
        FluentActions.Invoking(() => new KvCache(config, 1, 5, ScalarType.Int64)).Should().Throw<ArgumentException>().WithParameterName("dtype");
        FluentActions.Invoking(() => KvCache.EstimateBytes(config, 1, -1, ScalarType.Float32)).Should().Throw<ArgumentOutOfRangeException>();
        var disposed = new KvCache(config, 1, 4);
        disposed.Dispose();
        disposed.Invoking(c => c.Reset()).Should().Throw<ObjectDisposedException>();
    }
}
