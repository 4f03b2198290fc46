using FluentAssertions;
using GqaTransformer;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

/// <summary>
/// q/k/v and gate/up fused into one product (used on CUDA; fused here on the CPU by hand): the parameters become
/// views of one matrix, so the products, checkpoints, in-place updates and device moves must all still hold.
/// </summary>
public class FusedLinearsTests
{
    private static IEnumerable<FusedLinears> Groups(DecoderModel model)
        => model.Layers.SelectMany(layer => new[] { layer.Attention.Projections, layer.Mlp.GateUp });

    [Theory]
    [InlineData("hf-tiny/llama_gqa")]
    [InlineData("hf-ref/qwen2_bias")] // q/k/v biases fuse too
    public void The_fused_product_equals_each_layers_product(string name)
    {
        using var scope = NewDisposeScope();
        using var model = DecoderModel.FromPretrained(Path.Combine(Fixtures.Root, name));
        var x = randn(2, 3, model.Config.HiddenSize, generator: new Generator(5));
        foreach (var group in Groups(model))
        {
            var separate = group.Layers.Select(layer => layer.forward(x)).ToArray();
            group.Fuse().Should().BeTrue();
            group.IsFused.Should().BeTrue();
            var (weight, bias) = FusedOf(group);
            var fused = group.Split(nn.functional.linear(x, weight, bias));
            fused.Should().HaveCount(separate.Length);
            for (int i = 0; i < separate.Length; i++)
                Tiny.MaxAbsDiff(fused[i], separate[i]).Should().BeLessThan(1e-5f);
            // the layers themselves still compute the same, now reading views of the fused matrix
            for (int i = 0; i < separate.Length; i++)
                Tiny.MaxAbsDiff(group.Layers[i].forward(x), separate[i]).Should().Be(0);
        }
    }

    [Fact]
    public void A_fused_model_saves_HF_keys_bit_exactly_and_reloads()
    {
        using var scope = NewDisposeScope();
        using var directory = new Fixtures.TempDirectory();
        using var model = Tiny.Model(Tiny.Config());
        var before = model.state_dict().ToDictionary(p => p.Key, p => p.Value.clone());
        foreach (var group in Groups(model)) group.Fuse().Should().BeTrue();
        model.SavePretrained(directory.Path);
        using var loaded = DecoderModel.FromPretrained(directory.Path);
        var reloaded = loaded.state_dict();
        reloaded.Keys.Should().BeEquivalentTo(before.Keys);
        reloaded.Keys.Should().Contain("model.layers.0.self_attn.k_proj.weight").And.Contain("model.layers.0.mlp.up_proj.weight");
        foreach (var (key, value) in before)
            reloaded[key].eq(value).all().item<bool>().Should().BeTrue(key);
    }

    [Fact]
    public void In_place_updates_of_a_parameter_reach_the_fused_matrix()
    {
        using var scope = NewDisposeScope();
        using var model = Tiny.Model(Tiny.Config());
        var attention = model.Layers[0].Attention;
        attention.Projections.Fuse().Should().BeTrue();
        var kProj = attention.Projections.Layers[1];
        using (no_grad()) kProj.weight!.add_(1.0f);          // as an optimizer step or load_state_dict writes
        var (weight, _) = FusedOf(attention.Projections);
        long qRows = attention.NumHeads * attention.HeadDim;
        weight.narrow(0, qRows, kProj.weight!.size(0)).eq(kProj.weight).all().item<bool>().Should().BeTrue();
    }

    [Fact]
    public void Replaced_parameters_are_noticed_and_fused_again()
    {
        using var scope = NewDisposeScope();
        using var model = Tiny.Model(Tiny.Config());
        var mlp = model.Layers[0].Mlp;
        var group = mlp.GateUp;
        group.Fuse().Should().BeTrue();
        mlp.to(ScalarType.Float64);                          // new parameter tensors: the old fused matrix is stale
        group.IsFused.Should().BeFalse();
        group.Fuse().Should().BeTrue();
        FusedOf(group).Weight.dtype.Should().Be(ScalarType.Float64);
        var x = randn(1, 2, model.Config.HiddenSize, ScalarType.Float64);
        var fused = group.Split(nn.functional.linear(x, FusedOf(group).Weight));
        Tiny.MaxAbsDiff(fused[1], group.Layers[1].forward(x)).Should().Be(0);
    }

    [Fact]
    public void Under_autograd_or_on_the_cpu_the_layers_run_one_by_one()
    {
        using var scope = NewDisposeScope();
        using var model = Tiny.Model(Tiny.Config());
        var group = model.Layers[0].Attention.Projections;
        var x = randn(1, 2, model.Config.HiddenSize);
        group.For(x).Should().BeNull("x is on the CPU");
        using (no_grad()) group.For(x).Should().BeNull("x is on the CPU");
        group.IsFused.Should().BeFalse();
    }

    private static (Tensor Weight, Tensor? Bias) FusedOf(FusedLinears group)
    {
        group.Fuse().Should().BeTrue();
        return group.Fused!.Value;
    }
}
