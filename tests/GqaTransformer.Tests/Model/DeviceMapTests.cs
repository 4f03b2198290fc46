using FluentAssertions;
using GqaTransformer;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

/// <summary>
/// Device maps: parsed, fitted to memory budgets by the parts' sizes (checked against a real model's parameters), and
/// refused with what is wrong. Placing parts on several GPUs runs on the GPU machine (tools/gpu_soak.sh's companion,
/// docs/multi-gpu.md); here every device is the CPU.
/// </summary>
public class DeviceMapTests
{
    private static readonly Device Gpu0 = new(DeviceType.CUDA, 0), Gpu1 = new(DeviceType.CUDA, 1);

    [Fact]
    public void Parse_reads_consecutive_layers_per_device_with_the_embedding_first_and_the_head_last()
    {
        var map = DeviceMap.Parse("cuda:0=3, cuda:1=2", 5);
        map.Layers.Select(d => d.index).Should().Equal(0, 0, 0, 1, 1);
        map.Embedding.index.Should().Be(0);
        map.Head.index.Should().Be(1);
        map.IsSingleDevice.Should().BeFalse();
        map.ToString().Should().Be("cuda:0=3,cuda:1=2");
        DeviceMap.Parse("cpu=4", 4).IsSingleDevice.Should().BeTrue();
    }

    [Theory]
    [InlineData("cpu=3", "places 3 layers, but the model has 4")]
    [InlineData("cpu", "Expected DEVICE=LAYERS pairs")]
    [InlineData("cpu=0,cpu=4", "Expected DEVICE=LAYERS pairs")]
    [InlineData("cpu=-1,cpu=5", "Expected DEVICE=LAYERS pairs")]
    [InlineData("tpu=4", "is not a device")]
    public void Parse_refuses_what_it_does_not_understand(string text, string message)
    {
        var act = () => DeviceMap.Parse(text, 4);
        act.Should().Throw<ArgumentException>().WithParameterName("text").Where(e => e.Message.Contains(message));
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]  // tied embeddings: no lm_head
    [InlineData(false, true)]  // Qwen2: q/k/v biases
    public void The_part_sizes_are_the_real_parameters_bytes(bool tied, bool qwen2)
    {
        var config = Tiny.Config(layers: 3) with { TieWordEmbeddings = tied, ModelType = qwen2 ? "qwen2" : "llama" };
        using var model = new DecoderModel(config);
        long Bytes(IEnumerable<(string Name, Tensor Value)> parameters) => parameters.Sum(p => p.Value.numel() * 4);
        var named = model.named_parameters().Select(p => (Name: p.name, Value: (Tensor)p.parameter)).ToList();
        var sizes = DeviceMap.PartBytes.Of(config, ScalarType.Float32, batchSize: 2, capacity: 10, ScalarType.Float32);
        long cachePerLayer = KvCache.EstimateBytes(config, 2, 10, ScalarType.Float32) / 3;
        sizes.Embedding.Should().Be(Bytes(named.Where(p => p.Name.StartsWith("model.embed_tokens"))));
        sizes.Layer.Should().Be(Bytes(named.Where(p => p.Name.StartsWith("model.layers.0."))) + cachePerLayer);
        sizes.Head.Should().Be(Bytes(named.Where(p => p.Name.StartsWith("model.norm") || p.Name.StartsWith("lm_head"))));
        sizes.Total.Should().Be(Bytes(named) + cachePerLayer * 3);
    }

    [Fact]
    public void Fit_fills_each_device_in_order_and_says_when_nothing_fits()
    {
        var config = Tiny.Config(layers: 4);
        var sizes = DeviceMap.PartBytes.Of(config, ScalarType.BFloat16, 1, 64, ScalarType.BFloat16);
        var map = DeviceMap.Fit(config, ScalarType.BFloat16, 1, 64, [(Gpu0, sizes.Embedding + 2 * sizes.Layer + sizes.Layer / 2), (Gpu1, 10 * sizes.Total)]);
        map.Embedding.index.Should().Be(0);
        map.Layers.Select(d => d.index).Should().Equal(0, 0, 1, 1);
        map.Head.index.Should().Be(1);

        var tooSmall = () => DeviceMap.Fit(config, ScalarType.BFloat16, 1, 64, [(Gpu0, sizes.Total / 3), (Gpu1, sizes.Total / 3)]);
        tooSmall.Should().Throw<InsufficientMemoryException>().Where(e => e.Message.Contains("has no room") && e.Message.Contains("cuda:1"));
        var negative = () => DeviceMap.Fit(config, ScalarType.BFloat16, 1, 64, [(Gpu0, -1)]);
        negative.Should().Throw<ArgumentException>().WithParameterName("budgets");
    }

    [Fact]
    public void A_mapped_model_matches_the_single_device_model_and_its_cache_follows_the_map()
    {
        using var scope = NewDisposeScope();
        var config = Tiny.Config(layers: 2);
        using var single = new DecoderModel(config);
        using var mapped = new DecoderModel(config, ScalarType.Float32, DeviceMap.Parse("cpu=1,cpu=1", 2));
        mapped.load_state_dict(single.state_dict());
        using var cache = mapped.CreateCache(1, 8);
        cache.Device.type.Should().Be(DeviceType.CPU);
        var ids = tensor(new long[] { 3, 1, 4, 1 }).view(1, 4);
        using var singleCache = single.CreateCache(1, 8);
        Tiny.MaxAbsDiff(mapped.forward(ids, cache), single.forward(ids, singleCache)).Should().Be(0);
        var wrong = () => new KvCache(config, 1, 8, ScalarType.Float32, DeviceMap.Parse("cpu=3", 3));
        wrong.Should().Throw<ArgumentException>().WithParameterName("deviceMap");
        var badModel = () => new DecoderModel(config, ScalarType.Float32, DeviceMap.Parse("cpu=3", 3));
        badModel.Should().Throw<ArgumentException>().WithParameterName("deviceMap");
        var badLoad = () => DecoderModel.FromPretrained(Fixtures.HfTiny("llama_gqa"), ScalarType.Float32, DeviceMap.Parse("cpu=5", 5));
        badLoad.Should().Throw<ArgumentException>().WithParameterName("deviceMap").Where(e => e.Message.Contains("places 5 layers"));
    }

    [SkippableFact]
    public void Auto_without_cuda_says_so()
    {
        Skip.If(cuda.is_available(), "this machine has CUDA");
        var act = () => DeviceMap.Auto(Tiny.Config(), ScalarType.Float32, 1, 16);
        act.Should().Throw<InvalidOperationException>().WithMessage("*CUDA*");
    }
}
