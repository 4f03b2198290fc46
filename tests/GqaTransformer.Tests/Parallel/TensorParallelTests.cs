using FluentAssertions;
using GqaTransformer;
using Xunit;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

/// <summary>
/// Tensor parallelism's arithmetic, on the CPU: each rank's share of a layer (its query heads, its KV heads or a replica,
/// its MLP columns), with the blocks' outputs summed over the ranks here in the test where NCCL's all-reduce will sum
/// them across GPUs, must equal the unsplit layer, through a prefill and a decode step with each rank's own cache.
/// </summary>
public class TensorParallelTests
{
    [Theory]
    [InlineData(8, 2, 2, new[] { 0, 1 }, 1)]          // KV heads split: one each
    [InlineData(8, 2, 4, new[] { 0, 0, 1, 1 }, 1)]    // replicated: two ranks per KV head
    [InlineData(8, 1, 4, new[] { 0, 0, 0, 0 }, 1)]    // MQA: the one KV head on every rank
    [InlineData(8, 8, 4, new[] { 0, 2, 4, 6 }, 2)]    // MHA: two each
    public void The_plan_splits_query_heads_and_splits_or_replicates_kv_heads(int heads, int kvHeads, int ranks, int[] kvStarts, int kvPerRank)
    {
        var config = Tiny.Config(heads: heads, kvHeads: kvHeads, hidden: 64, intermediate: 96);
        for (int rank = 0; rank < ranks; rank++)
        {
            var plan = TensorParallelPlan.For(config, rank, ranks);
            plan.QueryHeads.Should().Be(heads / ranks);
            plan.QueryHeadStart.Should().Be(rank * heads / ranks);
            plan.KvHeadStart.Should().Be(kvStarts[rank]);
            plan.KvHeads.Should().Be(kvPerRank);
            // every query head of the rank reads a KV head the rank holds
            int group = heads / kvHeads;
            for (int q = plan.QueryHeadStart; q < plan.QueryHeadStart + plan.QueryHeads; q++)
                (q / group).Should().BeInRange(plan.KvHeadStart, plan.KvHeadStart + plan.KvHeads - 1);
        }
    }

    [Theory]
    [InlineData(8, 2, 3, "num_attention_heads (8) must divide by the rank count (3)")]
    [InlineData(12, 4, 6, "num_key_value_heads (4) must divide by the rank count (6)")]
    public void A_split_that_does_not_divide_is_refused(int heads, int kvHeads, int ranks, string message)
    {
        var config = Tiny.Config(heads: heads, kvHeads: kvHeads, hidden: 96, intermediate: 96 * 2);
        var act = () => TensorParallelPlan.For(config, 0, ranks);
        act.Should().Throw<ArgumentException>().WithParameterName("ranks").Where(e => e.Message.Contains(message));
        var badRank = () => TensorParallelPlan.For(Tiny.Config(), 2, 2);
        badRank.Should().Throw<ArgumentOutOfRangeException>().WithParameterName("rank");
    }

    [Theory]
    [InlineData(2, 1, "llama", false)]
    [InlineData(2, 2, "llama", false)]
    [InlineData(2, 4, "llama", false)]
    [InlineData(8, 4, "llama", true)]   // MHA, with biases on all four projections
    [InlineData(1, 4, "qwen2", false)]  // MQA, q/k/v biases
    public void Summed_over_ranks_the_shares_equal_the_whole_layer(int kvHeads, int ranks, string modelType, bool attentionBias)
    {
        using var scope = NewDisposeScope();
        var config = Tiny.Config(heads: 8, kvHeads: kvHeads, hidden: 64, intermediate: 96) with { ModelType = modelType, AttentionBias = attentionBias };
        manual_seed(7);
        using var whole = new DecoderLayer(config);
        using (no_grad())
            foreach (var (_, p) in whole.named_parameters()) p.copy_(randn_like(p) * 0.2 + (p.dim() == 1 ? 1 : 0));
        var weights = whole.state_dict().ToDictionary(p => p.Key, p => p.Value);
        var shares = Enumerable.Range(0, ranks).Select(r => new TensorParallelLayer(config, TensorParallelPlan.For(config, r, ranks), 0, weights)).ToArray();

        using var wholeCache = new KvCache(config, 2, 8);
        var rankCaches = shares.Select(s => new KvCache(s.Plan.RankConfig(config), 2, 8)).ToArray();
        long expectedCacheBytes = wholeCache.SizeInBytes * Math.Max(1, kvHeads / ranks) / kvHeads;   // its KV heads only
        rankCaches.Should().OnlyContain(c => c.SizeInBytes == expectedCacheBytes);

        var rotary = new RotaryEmbedding(config.HeadDim, config.RopeTheta);
        foreach (var (start, tokens) in new[] { (0, 5), (5, 1) })     // a prefill, then a decode step
        {
            var x = randn(2, tokens, config.HiddenSize);
            var (cos, sin) = rotary.forward(arange(start, start + tokens, ScalarType.Int64).unsqueeze(0).expand(2, -1), ScalarType.Float32);
            var expected = whole.forward(x, cos, sin, null, wholeCache);
            var h = x + shares.Select((s, r) => s.AttentionPart(x, cos, sin, null, rankCaches[r])).Aggregate((a, b) => a + b);
            var actual = h + shares.Select(s => s.MlpPart(h)).Aggregate((a, b) => a + b);
            Tiny.MaxAbsDiff(actual, expected).Should().BeLessThan(2e-5f, $"{tokens} tokens from position {start}");
            wholeCache.Advance(tokens);
            foreach (var cache in rankCaches) cache.Advance(tokens);
        }
        foreach (var cache in rankCaches) cache.Dispose();
        foreach (var share in shares) share.Dispose();
    }

    [Fact]
    public void One_rank_is_the_whole_layer()
    {
        using var scope = NewDisposeScope();
        var config = Tiny.Config();
        using var whole = new DecoderLayer(config);
        var weights = whole.state_dict().ToDictionary(p => p.Key, p => p.Value);
        using var one = new TensorParallelLayer(config, TensorParallelPlan.For(config, 0, 1), 0, weights);
        var x = randn(1, 4, config.HiddenSize);
        Tiny.MaxAbsDiff(one.Share.forward(x), whole.forward(x)).Should().Be(0);
        var missing = weights.Where(p => p.Key != "mlp.up_proj.weight").ToDictionary(p => p.Key, p => p.Value);
        var act = () => new TensorParallelLayer(config, TensorParallelPlan.For(config, 0, 2), 0, missing);
        act.Should().Throw<ArgumentException>().WithParameterName("weights");
    }
}
