using FluentAssertions;
using GqaTransformer;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

/// <summary>Bad input gets a clear exception naming the argument, before any native call can fail.</summary>
public class BadInputTests : IDisposable
{
    private readonly DecoderConfig _config = Tiny.Config();
    private readonly DecoderModel _model;
    private readonly DisposeScope _scope = NewDisposeScope();

    public BadInputTests() => _model = Tiny.Model(_config);

    public void Dispose()
    {
        _model.Dispose();
        _scope.Dispose();
    }

    [Fact]
    public void Ids_of_the_wrong_rank_dtype_or_range_are_rejected()
    {
        _model.Invoking(m => m.forward(zeros([5], ScalarType.Int64))).Should().Throw<ArgumentException>()
            .WithParameterName("inputIds").WithMessage("*rank 2*[5]*");
        _model.Invoking(m => m.forward(zeros([1, 2, 3], ScalarType.Int64))).Should().Throw<ArgumentException>()
            .WithParameterName("inputIds");
        _model.Invoking(m => m.forward(zeros([1, 4], ScalarType.Float32))).Should().Throw<ArgumentException>()
            .WithParameterName("inputIds").WithMessage("*int64*Float32*");
        _model.Invoking(m => m.forward(tensor(new long[] { 3, 97 }).view(1, 2))).Should().Throw<ArgumentOutOfRangeException>()
            .WithParameterName("inputIds").WithMessage("*[0, 97)*3 to 97*");
        _model.Invoking(m => m.forward(tensor(new long[] { -1, 5 }).view(1, 2))).Should().Throw<ArgumentOutOfRangeException>();
        _model.Invoking(m => m.forward(zeros([1, 0], ScalarType.Int64))).Should().Throw<ArgumentException>().WithMessage("*at least one token*");
    }

    [Fact]
    public void Attention_input_of_the_wrong_shape_or_dtype_is_rejected()
    {
        using var attention = new MultiHeadAttention(64, 8, 2);
        attention.Invoking(a => a.forward(randn(4, 64))).Should().Throw<ArgumentException>().WithParameterName("x").WithMessage("*rank 3*");
        attention.Invoking(a => a.forward(randn(1, 4, 32))).Should().Throw<ArgumentException>().WithParameterName("x").WithMessage("*[batch, tokens, 64]*[1, 4, 32]*");
        attention.Invoking(a => a.forward(ones([1, 4, 64], ScalarType.Int32))).Should().Throw<ArgumentException>().WithMessage("*floating-point*");
        attention.Invoking(a => a.forward(randn([1, 4, 64], ScalarType.Float64))).Should().Throw<ArgumentException>().WithMessage("*Float64*Float32 was expected*");
    }

    [Fact]
    public void Grouped_attention_rejects_mismatched_shapes_before_any_kernel_runs()
    {
        var q = randn(1, 8, 1, 16);
        var k = randn(1, 2, 10, 16);
        Run(q, k, randn(1, 2, 9, 16)).Should().Throw<ArgumentException>().WithParameterName("value").WithMessage("*same shape*");
        Run(q, randn(1, 3, 10, 16), randn(1, 3, 10, 16)).Should().Throw<ArgumentException>().WithMessage("*multiple of the key heads*");
        Run(q, randn(1, 2, 10, 8), randn(1, 2, 10, 8)).Should().Throw<ArgumentException>().WithMessage("*head_dim*");
        Run(randn(8, 1, 16), k, k).Should().Throw<ArgumentException>().WithParameterName("query");
        Run(q, k, k.to(ScalarType.Float64)).Should().Throw<ArgumentException>().WithMessage("*share a dtype*Float64*");
        var meta = new Device(DeviceType.META);
        Run(q, k, zeros([1, 2, 10, 16], device: meta)).Should().Throw<ArgumentException>().WithMessage("*one device*meta*");

        static Action Run(Tensor q, Tensor k, Tensor v) => () => MultiHeadAttention.GroupedScaledDotProduct(q, k, v, null, causal: true);
    }

    [Fact]
    public void Direct_attention_construction_validates_its_arguments()
    {
        FluentActions.Invoking(() => new MultiHeadAttention(64, 8, 3)).Should().Throw<ArgumentException>().WithMessage("*divisible by num_key_value_heads (3)*");
        FluentActions.Invoking(() => new MultiHeadAttention(64, 8, 16)).Should().Throw<ArgumentException>().WithMessage("*must not exceed*");
        FluentActions.Invoking(() => new MultiHeadAttention(60, 8)).Should().Throw<ArgumentException>().WithMessage("*hidden_size (60)*");
        FluentActions.Invoking(() => new MultiHeadAttention(64, 8, 2, layerIndex: -1)).Should().Throw<ArgumentOutOfRangeException>().WithParameterName("layerIndex");
    }

    [Fact]
    public void A_cache_from_another_config_or_batch_is_rejected()
    {
        var ids = Tiny.Ids(2, 3, _config.VocabSize);
        using var otherHeads = new KvCache(_config with { NumKeyValueHeads = 4 }, 2, 10);
        _model.Invoking(m => m.forward(ids, otherHeads)).Should().Throw<ArgumentException>().WithParameterName("cache").WithMessage("*4 KV heads*2*");
        using var otherLayers = new KvCache(_config with { NumHiddenLayers = 3 }, 2, 10);
        _model.Invoking(m => m.forward(ids, otherLayers)).Should().Throw<ArgumentException>().WithMessage("*3 layers*");
        using var otherBatch = new KvCache(_config, 1, 10);
        _model.Invoking(m => m.forward(ids, otherBatch)).Should().Throw<ArgumentException>().WithMessage("*batch size 1*batch size 2*");
        new Action(() => new KvCache(_config, 2, 10, ScalarType.Int32)).Should().Throw<ArgumentException>().WithParameterName("dtype");
        otherHeads.Length.Should().Be(0);
    }

    [Fact]
    public void Masks_and_positions_of_the_wrong_shape_are_rejected()
    {
        var ids = Tiny.Ids(2, 3, _config.VocabSize);
        _model.Invoking(m => m.forward(ids, null, attentionMask: ones(2, 4))).Should().Throw<ArgumentException>()
            .WithParameterName("attentionMask").WithMessage("*[2, 3]*[2, 4]*");
        _model.Invoking(m => m.forward(ids, null, positionIds: zeros([2, 2], ScalarType.Int64))).Should().Throw<ArgumentException>()
            .WithParameterName("positionIds");
        _model.Invoking(m => m.forward(ids, null, positionIds: zeros([2, 3], ScalarType.Float32))).Should().Throw<ArgumentException>()
            .WithParameterName("positionIds").WithMessage("*int64*");
    }

    [Fact]
    public void Inputs_on_another_device_are_rejected_before_any_kernel_runs()
    {
        // The meta device exists everywhere, holds no data, and stands in for "not where the weights are".
        var metaIds = zeros([1, 3], ScalarType.Int64, device: new Device(DeviceType.META));
        _model.Invoking(m => m.forward(metaIds)).Should().Throw<ArgumentException>()
            .WithParameterName("inputIds").WithMessage("*device meta*cpu*");
        using var attention = new MultiHeadAttention(64, 8, 2);
        attention.Invoking(a => a.forward(zeros([1, 3, 64], device: new Device(DeviceType.META)))).Should().Throw<ArgumentException>()
            .WithParameterName("x");
    }
}
