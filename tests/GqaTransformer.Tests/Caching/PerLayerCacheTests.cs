using FluentAssertions;
using GqaTransformer;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

/// <summary>The cache is sized per layer: a sliding layer keeps its window, a full layer every token (ADR 0021).</summary>
public class PerLayerCacheTests
{
    [Fact]
    public void Gemma3_4b_at_128k_costs_its_full_layers_tokens_plus_a_window_per_sliding_layer()
    {
        var config = ModelPresets.Get("gemma-3-4b");
        int full = Enumerable.Range(0, config.NumHiddenLayers).Count(i => (i + 1) % 6 == 0);   // transformers' pattern of 6
        full.Should().Be(5);
        const long tokens = 131_072, bf16 = 2;
        long perTokenPerLayer = 2 * config.NumKeyValueHeads * config.HeadDim * bf16;           // K and V
        long expected = perTokenPerLayer * (full * tokens + (config.NumHiddenLayers - full) * 1024L);
        KvCache.EstimateBytes(config, 1, tokens, ScalarType.BFloat16).Should().Be(expected).And.Be(2_805_989_376);
        long everyLayerFull = perTokenPerLayer * config.NumHiddenLayers * tokens;
        everyLayerFull.Should().Be(18_253_611_008);                                             // 6.5 times as much
        KvCache.MaxTokensForBudget(config, 1, expected, ScalarType.BFloat16).Should().Be(tokens);
    }

    [Fact]
    public void An_allocated_cache_holds_exactly_what_the_estimate_says_layer_by_layer()
    {
        using var scope = NewDisposeScope();
        var config = ModelPresets.Get("gemma-3-1b") with { NumHiddenLayers = 7 };               // 6 sliding (512) + 1 full
        using var cache = new KvCache(config, 1, 2048, ScalarType.BFloat16);
        Enumerable.Range(0, 7).Select(cache.SlotsOf).Should().Equal(512, 512, 512, 512, 512, 2048, 512);
        cache.SizeInBytes.Should().Be(cache.Tensors.Sum(t => t.numel() * t.ElementSize))
            .And.Be(KvCache.EstimateBytes(config, 1, 2048, ScalarType.BFloat16));
        cache.IsRingBuffer.Should().BeTrue();
        using var short_ = new KvCache(config, 1, 300, ScalarType.BFloat16);
        short_.IsRingBuffer.Should().BeFalse("a window longer than the capacity keeps every token");
    }

    [Fact]
    public void A_fixed_shape_step_declines_rings_and_says_why()
    {
        using var model = new DecoderModel(ModelFamilyTests.Configs["gemma3_text"]);   // window 4
        model.FixedStepRefusal(4).Should().BeNull("no layer rings within 4 tokens");
        model.FixedStepRefusal(16).Should().Contain("sliding window of 4 tokens");
        using var session = new GenerationSession(model, 1, 16, useCudaGraphs: true);
        session.UsesCudaGraphs.Should().BeFalse();
        session.CudaGraphsUnavailableReason.Should().NotBeNullOrEmpty();
    }

    [Fact]
    public void Every_preset_loads_and_says_which_layers_slide()
    {
        foreach (var (name, config) in ModelPresets.All)
        {
            config.Validate();
            KvCache.EstimateBytes(config, 1, 4096, ScalarType.BFloat16).Should().BeGreaterThan(0, name);
        }
        var gemma2 = ModelPresets.Get("gemma-2-2b");
        Enumerable.Range(0, 4).Select(gemma2.IsSlidingLayer).Should().Equal(true, false, true, false);
        ModelPresets.Get("qwen3-8b").IsSlidingLayer(35).Should().BeFalse("released Qwen3 does not use its window");
        ModelPresets.Get("phi-4-mini").WindowOf(0).Should().Be(262_144);
    }
}
